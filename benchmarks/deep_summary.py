"""Summarise the runs of benchmarks/deep_kitchen.sh: a Markdown table, mean and std over seeds.

    python benchmarks/deep_summary.py OUT [--json FILE]

One row per phase (``fixed``: no penalty; ``learn``: structure learning to a target) and
model (``1layer``, ``2layers``, ``bidir``): test and dev accuracy, transitions, parameters,
seconds per run, and the seeds that finished; then every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sparse_rational.structure import format_structure


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    runs = []
    for metrics in sorted(Path(args.out).glob("*-s*/metrics.json")):
        phase, model, seed = metrics.parent.name.rsplit("-", 2)
        m = json.loads(metrics.read_text())
        runs.append(
            {
                "phase": phase,
                "model": model,
                "seed": int(seed[1:]),
                "test_accuracy": m["test_accuracy"],
                "dev_accuracy": m["dev_accuracy"],
                "transitions": m["transitions"],
                "parameters": m["parameters"],
                "structure": format_structure(m["structure"]),
                "train_seconds": m["train_seconds"],
                "seconds_per_epoch": m["seconds_per_epoch"],
            }
        )
    print("| phase | model | seeds | test accuracy | dev accuracy | transitions | parameters | s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in ("fixed", "learn"):
        for model in ("1layer", "2layers", "bidir"):
            rows = [r for r in runs if r["phase"] == phase and r["model"] == model]
            if not rows:
                continue

            def col(k: str, rows: list[dict] = rows) -> list[float]:
                return [float(r[k]) for r in rows]

            print(
                f"| {phase} | {model} | {','.join(str(r['seed']) for r in rows)} | {_ms(col('test_accuracy'))} | "
                f"{_ms(col('dev_accuracy'))} | {_ms(col('transitions'), 1)} | {_ms(col('parameters'), 0)} | "
                f"{_ms(col('train_seconds'), 0)} |"
            )
    print("\nEvery run:\n")
    print("| phase | model | seed | test | dev | transitions | structure | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['phase']} | {r['model']} | {r['seed']} | {r['test_accuracy']:.3f} | {r['dev_accuracy']:.3f} | "
            f"{r['transitions']} | {r['structure']} | {r['train_seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

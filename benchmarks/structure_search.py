"""Structure learning in one run against the authors' lambda search (issue 18).

For each dataset and seed: one 24x4 baseline training (the time unit), the regularisation
path (one penalised run for every target, each snapshot pruned and finetuned) and, with
``--search``, the lambda search for each target (one penalised run per try). Records test
accuracy, transitions and wall time per method and target; writes JSON (with provenance)
and prints a table.

    python benchmarks/structure_search.py --datasets amazon:kitchen --seeds 0 1 2 \\
        --methods path:proximal path:gradient search:gradient --json docs/results/structure_search.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _provenance import provenance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["amazon:kitchen"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--embeddings", default="glove-6b-50d")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--targets", nargs="+", type=int, default=[80, 60, 40, 20])
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["path:proximal"],
        help="path:proximal, path:gradient, search:gradient, search:proximal",
    )
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--path-start", type=float, default=None)
    ap.add_argument("--path-growth", type=float, default=None)
    ap.add_argument("--path-warmup", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from sparse_rational.config import RunOptions
    from sparse_rational.data import load_dataset
    from sparse_rational.errors import UserError
    from sparse_rational.pipeline import train_structure_path, train_text_classifier

    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.datasets:
        splits = load_dataset(spec, args.data_dir, 0)
        for seed in args.seeds:
            base = RunOptions(embeddings=args.embeddings)
            train = base.train.__class__(
                **{**base.train.__dict__, "seed": seed, **({"lr": args.lr} if args.lr else {})}
            )
            structure = base.structure.__class__(
                **{
                    **base.structure.__dict__,
                    **{
                        k: v
                        for k, v in (
                            ("path_start", args.path_start),
                            ("path_growth", args.path_growth),
                            ("path_warmup", args.path_warmup),
                        )
                        if v is not None
                    },
                }
            )
            base = RunOptions(args.embeddings, base.model, train, structure)
            t0 = time.perf_counter()
            clf = train_text_classifier(splits, options=base, verbose=False)
            unit = time.perf_counter() - t0
            rows.append(
                {
                    "dataset": spec,
                    "seed": seed,
                    "method": "baseline 24x4",
                    "target": None,
                    "transitions": clf.metrics["transitions"],
                    "test_accuracy": clf.metrics["test_accuracy"],
                    "seconds": unit,
                }
            )
            print(f"{spec} seed {seed} baseline: {clf.metrics['test_accuracy']:.3f} in {unit:.0f}s", flush=True)
            for method in args.methods:
                kind, update = method.split(":")
                opts = base.structure.__class__(**{**base.structure.__dict__, "penalty_update": update})
                run_opts = RunOptions(args.embeddings, base.model, train, opts)
                t0 = time.perf_counter()
                if kind == "path":
                    run = train_structure_path(splits, args.targets, options=run_opts, verbose=False)
                    seconds = time.perf_counter() - t0
                    for target in args.targets:
                        clf = run.models.get(target)
                        rows.append(
                            {
                                "dataset": spec,
                                "seed": seed,
                                "method": method,
                                "target": target,
                                "transitions": clf.metrics["transitions"] if clf else None,
                                "test_accuracy": clf.metrics["test_accuracy"] if clf else None,
                                "seconds": seconds,
                                "missed": target in run.missed,
                            }
                        )
                    print(
                        f"  {method}: {seconds:.0f}s ({seconds / unit:.1f}x), "
                        + ", ".join(
                            f"t{t}: {r['transitions']} -> {r['test_accuracy']}"
                            for t, r in zip(args.targets, rows[-len(args.targets) :])
                        ),
                        flush=True,
                    )
                else:
                    total = 0.0
                    for target in args.targets:
                        t1 = time.perf_counter()
                        try:
                            clf = train_text_classifier(
                                splits, options=run_opts, target_transitions=target, verbose=False
                            )
                            got = (clf.metrics["transitions"], clf.metrics["test_accuracy"], len(clf.metrics["search"]))
                        except UserError:
                            got = (None, None, None)
                        seconds = time.perf_counter() - t1
                        total += seconds
                        rows.append(
                            {
                                "dataset": spec,
                                "seed": seed,
                                "method": method,
                                "target": target,
                                "transitions": got[0],
                                "test_accuracy": got[1],
                                "tries": got[2],
                                "seconds": seconds,
                                "missed": got[0] is None,
                            }
                        )
                        print(f"  {method} t{target}: {got} in {seconds:.0f}s", flush=True)
                    print(f"  {method}: all targets {total:.0f}s ({total / unit:.1f}x)", flush=True)
    print()
    print("| method | target | transitions | test accuracy | missed | time / baseline |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(r["method"], r["target"] or 0) for r in rows}, key=lambda k: (k[0], -k[1]))
    for method, target in keys:
        rs = [r for r in rows if r["method"] == method and (r["target"] or 0) == target]
        acc = [r["test_accuracy"] for r in rs if r["test_accuracy"] is not None]
        tr = [r["transitions"] for r in rs if r["transitions"] is not None]
        units = {(r["dataset"], r["seed"]): r["seconds"] for r in rows if r["method"] == "baseline 24x4"}
        if method.startswith("search"):
            per = {}
            for r in rs:
                per[(r["dataset"], r["seed"])] = r["seconds"]
            ratio = statistics.mean(per[k] / units[k] for k in per)
        else:
            ratio = statistics.mean(r["seconds"] / units[(r["dataset"], r["seed"])] for r in rs)
        acc_txt = f"{100 * statistics.mean(acc):.1f} +- {100 * statistics.pstdev(acc):.1f}" if acc else "-"
        tr_txt = f"{statistics.mean(tr):.1f}" if tr else "-"
        print(
            f"| {method} | {target or '-'} | {tr_txt} | {acc_txt} | {sum(1 for r in rs if r.get('missed'))} "
            f"| {ratio:.1f}x |"
        )
    if args.json:
        from sparse_rational.fileio import atomic_write_json

        atomic_write_json(args.json, {"rows": rows, "provenance": provenance()})


if __name__ == "__main__":
    main()

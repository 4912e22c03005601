"""Training recipes and readouts measured across datasets and seeds (issues 17 and 20).

Each ``--config NAME:key=value,...`` overrides library defaults (``RunOptions`` fields of
``model``, ``train`` or ``structure``: readout, self_loop_bias, dropout, input_dropout,
lr, clip, patience, epochs, penalty_update, ...). Every config is trained as the 24x4
baseline and, with ``--target 20``, as a learned 20-transition structure (the
regularisation path with proximal updates unless the config says otherwise). Rows hold dev
and test accuracy; defaults are chosen by dev accuracy, never by test. ``--tfidf`` adds the
TF-IDF + logistic regression anchor on the same splits (C chosen on dev).

    python benchmarks/recipe.py --datasets amazon:kitchen amazon:books --seeds 1 2 3 \\
        --config final: --config mean:readout=mean --target 20 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _provenance import provenance  # noqa: E402


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def parse_config(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    overrides = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        overrides[key.strip()] = _value(value.strip())
    return name, overrides


def run_job(job: dict) -> dict:
    import dataclasses

    import torch

    from sparse_rational.config import RunOptions
    from sparse_rational.data import load_dataset
    from sparse_rational.pipeline import train_text_classifier

    torch.set_num_threads(1)
    splits = load_dataset(job["dataset"], job["data_dir"], job["split_seed"])
    base = RunOptions(embeddings=job["embeddings"])
    parts = {"model": base.model, "train": base.train, "structure": base.structure}
    overrides = {**job["overrides"], "seed": job["seed"]}
    if job["target"]:
        overrides = {
            "structure_search": "path",
            "penalty_update": "proximal",
            **overrides,
            "target_transitions": job["target"],
        }
    for key, value in overrides.items():
        owner = next((n for n, p in parts.items() if key in {f.name for f in dataclasses.fields(p)}), None)
        if owner is None:
            raise SystemExit(f"unknown option {key}")
        parts[owner] = dataclasses.replace(parts[owner], **{key: value})
    options = RunOptions(job["embeddings"], parts["model"], parts["train"], parts["structure"])
    t0 = time.perf_counter()
    try:
        clf = train_text_classifier(splits, options=options, verbose=False)
        m = clf.metrics
        out = {
            "dev_accuracy": m["dev_accuracy"],
            "test_accuracy": m["test_accuracy"],
            "transitions": m["transitions"],
            "epochs": m["epochs"],
            "status": "ok",
        }
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        out = {"status": "failed", "error": str(exc).splitlines()[0][:300]}
    return {**job, **out, "seconds": round(time.perf_counter() - t0, 1)}


def tfidf_job(dataset: str, data_dir, split_seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from sparse_rational.data import load_dataset

    splits = load_dataset(dataset, data_dir, split_seed)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform([e.text for e in splits.train])
    best = None
    for c in (0.3, 1, 3, 10, 30):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, [e.label for e in splits.train])
        dev = clf.score(vec.transform([e.text for e in splits.dev]), [e.label for e in splits.dev])
        if best is None or dev > best[0]:
            best = (dev, c, clf)
    test = best[2].score(vec.transform([e.text for e in splits.test]), [e.label for e in splits.test])
    return {
        "dataset": dataset,
        "config": "tfidf+lr",
        "target": None,
        "seed": None,
        "dev_accuracy": best[0],
        "test_accuracy": test,
        "C": best[1],
        "status": "ok",
    }


def summarise(rows: list[dict]) -> str:
    lines = [
        "| config | target | " + " | ".join(sorted({r["dataset"] for r in rows})) + " | mean dev | mean test |",
        "",
    ]
    datasets = sorted({r["dataset"] for r in rows})
    lines[1] = "|" + "---|" * (len(datasets) + 4)
    keys = sorted({(r["config"], r["target"] or 0) for r in rows}, key=lambda k: (k[1], k[0]))
    for config, target in keys:
        cells, devs, tests = [], [], []
        for ds in datasets:
            rs = [
                r
                for r in rows
                if r["config"] == config and (r["target"] or 0) == target and r["dataset"] == ds and r["status"] == "ok"
            ]
            if not rs:
                cells.append("-")
                continue
            dev = statistics.mean(r["dev_accuracy"] for r in rs)
            test = [r["test_accuracy"] for r in rs]
            devs.append(dev)
            tests.append(statistics.mean(test))
            sd = f" +- {100 * statistics.pstdev(test):.1f}" if len(test) > 1 else ""
            cells.append(f"{100 * statistics.mean(test):.1f}{sd}")
        if not devs:  # every run of this row failed
            cells = ["-"] * len(datasets)
            devs, tests = [float("nan")], [float("nan")]
        failed = sum(1 for r in rows if r["config"] == config and (r["target"] or 0) == target and r["status"] != "ok")
        name = config + (f" ({failed} failed)" if failed else "")
        lines.append(
            f"| {name} | {target or '-'} | "
            + " | ".join(cells)
            + f" | {100 * statistics.mean(devs):.1f} | {100 * statistics.mean(tests):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["amazon:kitchen"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--embeddings", default="glove-6b-50d")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--config", action="append", default=[], help="NAME:key=value,... (repeatable)")
    ap.add_argument("--target", type=int, default=None, help="also learn a structure of this size")
    ap.add_argument("--no-baseline", action="store_true", help="only the learned structures")
    ap.add_argument("--tfidf", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    configs = [parse_config(c) for c in args.config] or [("defaults", {})]
    jobs = [
        {
            "dataset": ds,
            "data_dir": args.data_dir,
            "split_seed": args.split_seed,
            "embeddings": args.embeddings,
            "seed": seed,
            "config": name,
            "overrides": ov,
            "target": target,
        }
        for ds in args.datasets
        for name, ov in configs
        for seed in args.seeds
        for target in ([] if args.no_baseline else [None]) + ([args.target] if args.target else [])
    ]
    rows = [tfidf_job(ds, args.data_dir, args.split_seed) for ds in args.datasets] if args.tfidf else []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        for k, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            rows.append(r)
            print(
                f"[{k}/{len(jobs)}] {r['dataset']} {r['config']} t{r['target']} seed {r['seed']}: "
                f"{r.get('dev_accuracy')} / {r.get('test_accuracy')} ({r.get('transitions')}) "
                f"{r['seconds']}s {r.get('error', '')}",
                flush=True,
            )
            if args.json:
                from sparse_rational.fileio import atomic_write_json

                atomic_write_json(args.json, {"rows": rows, "argv": sys.argv, "provenance": provenance()})
    print(summarise(rows))


if __name__ == "__main__":
    main()

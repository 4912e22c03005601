"""Accuracy against what users would pick instead, on the same splits in one run (issue 26).

For every dataset and seed: named configurations of our model (frozen or tuned word
vectors, 24x4 or a 20-transition target, with or without a teacher), TF-IDF 1-2-gram +
logistic regression (C on dev) and fastText (wordNgrams, epochs and lr on dev), each
with its test accuracy, its accuracy on the negation/contrast set of the dataset's domain
(:mod:`sparse_rational.data.contrast`) and, for our models, how many WFSAs keep 2 or more
transitions. Rows are appended to a JSON-lines file as they finish; a rerun skips the rows
it already holds (stop it any time). ``--summary`` prints the markdown tables.

    python benchmarks/accuracy.py --data-dir ../shared/data --out docs/results/accuracy/rows.jsonl \\
        --datasets hatn:kitchen,hatn:books,hatn:dvd,hatn:electronics --seeds 1,2,3 \\
        --configs tfidf,fasttext,frozen-24x4,frozen-t20,tuned-24x4,tuned-t20
    python benchmarks/accuracy.py --out docs/results/accuracy/rows.jsonl --summary

A teacher folder per domain for the ``minilm-*`` configurations: ``--minilm DIR`` holds
``DIR/<domain>/`` (e.g. made by ``--configs minilm-teacher``, which trains it: 24x4 on
``hf:minilm`` with the max readout).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Our configurations: overrides of the library's defaults (RunOptions); anything not named
# here is the default a user gets. "recipe" names the knobs of the row, for the tables.
CONFIGS: dict[str, dict] = {
    "default-t20": {"target": 20},
    "default-24x4": {},
    "frozen-24x4": {"vectors": "frozen", "readout": "max"},
    "frozen-t20": {"vectors": "frozen", "readout": "max", "target": 20, "depth_discount": 0},
    "tuned-24x4": {"vectors": "tuned", "readout": "max"},
    "tuned-t20": {"vectors": "tuned", "readout": "max", "target": 20, "depth_discount": 0},
    "tuned-mean-24x4": {"vectors": "tuned", "readout": "mean"},
    "tuned-mean-t20": {"vectors": "tuned", "readout": "mean", "target": 20, "depth_discount": 0},
    "ft-t20": {"vectors": "finetune", "readout": "max", "target": 20, "depth_discount": 0},
    "ft-mean-t20": {"vectors": "finetune", "readout": "mean", "target": 20, "depth_discount": 0},
    "tfidf-ft-mean-t20": {
        "teacher": "tfidf",
        "augment": 2,
        "vectors": "finetune",
        "readout": "mean",
        "target": 20,
        "depth_discount": 0,
    },
    "minilm-ft-mean-t20": {
        "teacher": "minilm",
        "augment": 2,
        "vectors": "finetune",
        "readout": "mean",
        "target": 20,
        "depth_discount": 0,
    },
    "minilm-default-t20": {"teacher": "minilm", "augment": 2, "target": 20},
    "minilm-teacher": {"embeddings": "hf:minilm", "vectors": "frozen", "readout": "max", "teacher_model": True},
}
BASELINES = ("tfidf", "fasttext")
KNOBS = (
    "vectors",
    "readout",
    "vector_lr",
    "vector_pull",
    "teacher_weight",
    "temperature",
    "augment",
    "depth_discount",
    "contrast_pairs",
    "negation_pairs",
)


def options_for(name: str, seed: int, minilm: str | None, domain: str, sets: dict):
    from sparse_rational.config import RunOptions

    spec = {**CONFIGS[name], **sets}
    o = RunOptions()
    embeddings = spec.get("embeddings", o.embeddings)
    model = replace(o.model, **{k: spec[k] for k in ("vectors", "readout", "patterns") if k in spec})
    train = replace(
        o.train,
        seed=seed,
        **{k: spec[k] for k in ("vector_lr", "vector_pull", "lr", "contrast_pairs", "negation_pairs") if k in spec},
    )
    structure = replace(
        o.structure, target_transitions=spec.get("target"), **{k: spec[k] for k in ("depth_discount",) if k in spec}
    )
    teacher = spec.get("teacher")
    if teacher == "minilm":
        if not minilm:
            raise SystemExit(f"{name} needs --minilm DIR (a teacher folder per domain)")
        teacher = str(Path(minilm) / domain)
    teach = replace(
        o.teach,
        teacher=teacher,
        **{k: spec[k] for k in ("augment", "teacher_weight", "temperature", "transfer") if k in spec},
    )
    return RunOptions(embeddings, model, train, structure, teach), spec


HELDOUT = Path(__file__).parent / "data" / "heldout_negation.tsv"


def heldout_set() -> list:
    """The 120 hand-written sentences of ``data/heldout_negation.tsv``: a second negation/contrast
    set in other words than the templates, never used to choose a recipe."""
    from sparse_rational.data.contrast import ContrastExample

    lines = [line.split("\t") for line in HELDOUT.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return [ContrastExample(text, label, family) for label, family, text in lines]


def contrast_accuracy(predict, domain: str, classes) -> dict:
    """``contrast``: the accuracy on the domain's negation/contrast set, per family;
    ``heldout``: the same on :func:`heldout_set`."""
    from sparse_rational.data.contrast import contrast_set, label_map, score

    mapping = label_map(classes)
    inverse = {v: k for k, v in mapping.items()}
    out = {}
    for key, examples in (("contrast", contrast_set(domain)), ("heldout", heldout_set())):
        predicted = [inverse.get(p, p) for p in predict([e.text for e in examples])]
        out[key] = score(predicted, examples)
    return out


def run_ours(name, dataset, splits, seed, args, sets) -> dict:
    from sparse_rational.pipeline import train_text_classifier

    domain = dataset.split(":", 1)[1]
    options, spec = options_for(name, seed, args.minilm, domain, sets)
    t0 = time.perf_counter()
    clf = train_text_classifier(splits, options=options, verbose=False)
    seconds = time.perf_counter() - t0
    m = clf.metrics
    row = {
        "test_accuracy": m["test_accuracy"],
        "dev_accuracy": m["dev_accuracy"],
        "structure": m["structure_summary"],
        "transitions": m["transitions"],
        "wfsas": m["wfsas"],
        "long_wfsas": m.get("long_wfsas"),
        "seconds": round(seconds, 1),
        "recipe": {k: spec[k] for k in KNOBS if k in spec},
        **contrast_accuracy(clf.predict, domain, clf.classes),
    }
    if spec.get("teacher_model"):  # keep it: the minilm-* rows are taught by it
        folder = Path(args.minilm or "runs/minilm-teachers") / domain
        folder.parent.mkdir(parents=True, exist_ok=True)
        clf.save(folder)
        row["folder"] = str(folder)
    return row


def run_tfidf(splits, domain) -> dict:
    from sparse_rational.teach import TfidfTeacher

    t0 = time.perf_counter()
    teacher = TfidfTeacher(splits)
    test = [e.text for e in splits.test]
    acc = sum(p == e.label for p, e in zip(teacher.model.predict(test), splits.test)) / len(test)
    return {
        "test_accuracy": acc,
        "dev_accuracy": teacher.dev_accuracy,
        "C": teacher.C,
        "seconds": round(time.perf_counter() - t0, 1),
        **contrast_accuracy(lambda t: list(teacher.model.predict(t)), domain, teacher.classes),
    }


def run_fasttext(splits, domain, seed) -> dict:
    import fasttext

    from sparse_rational.data import tokenize

    def line(text: str) -> str:
        return " ".join(tokenize(text))

    def predict(model, texts):
        labels, _ = model.predict([line(t) for t in texts])  # a list: numpy 2 refuses the one-text path's copy=False
        return [lab[0][len("__label__") :] for lab in labels]

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as f:
            for e in splits.train:
                f.write(f"__label__{e.label} {line(e.text)}\n")
        best = None
        for ngrams in (1, 2):
            for epoch in (5, 25):
                for lr in (0.1, 0.5):
                    model = fasttext.train_supervised(
                        path, wordNgrams=ngrams, epoch=epoch, lr=lr, thread=1, seed=seed, verbose=0
                    )
                    dev = sum(p == e.label for p, e in zip(predict(model, [e.text for e in splits.dev]), splits.dev))
                    if best is None or dev > best[0]:
                        best = (dev, model, {"wordNgrams": ngrams, "epoch": epoch, "lr": lr})
    assert best is not None
    dev, model, chosen = best
    test = predict(model, [e.text for e in splits.test])
    return {
        "test_accuracy": sum(p == e.label for p, e in zip(test, splits.test)) / len(splits.test),
        "dev_accuracy": dev / len(splits.dev),
        "chosen": chosen,
        "seconds": round(time.perf_counter() - t0, 1),
        **contrast_accuracy(lambda t: predict(model, t), domain, sorted({e.label for e in splits.train})),
    }


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summary(rows: list[dict]) -> str:
    by = defaultdict(lambda: defaultdict(list))
    datasets = sorted({r["dataset"] for r in rows})
    for r in rows:
        by[r["config"]][r["dataset"]].append(r)
    out = [
        "| configuration | " + " | ".join(d.split(":")[1] for d in datasets) + " | mean test | mean dev | "
        "contrast | WFSAs of 2+ (mean) | runs |",
        "|---" * (len(datasets) + 6) + "|",
    ]

    def pct(values):
        return f"{100 * statistics.mean(values):.1f}" if values else "-"

    for config in sorted(by, key=lambda c: (c not in BASELINES, c)):
        cells, tests, devs, contrast, longs, n = [], [], [], [], [], 0
        for d in datasets:
            rs = by[config][d]
            n += len(rs)
            cells.append(pct([r["test_accuracy"] for r in rs]))
            if rs:
                tests.append(statistics.mean(r["test_accuracy"] for r in rs))
                devs.append(statistics.mean(r["dev_accuracy"] for r in rs))
                contrast.append(statistics.mean(r["contrast"]["accuracy"] for r in rs))
                longs += [(r["long_wfsas"], r["wfsas"]) for r in rs if r.get("long_wfsas") is not None]
        complete = all(by[config][d] for d in datasets)
        mean = pct(tests) if complete else f"({pct(tests)})"
        long_txt = (
            f"{statistics.mean(a for a, _ in longs):.1f} of {statistics.mean(b for _, b in longs):.1f}" if longs else ""
        )
        out.append(
            f"| {config} | "
            + " | ".join(cells)
            + f" | {mean} | {pct(devs)} | {pct(contrast)} | {long_txt or '-'} | {n} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SPARSE_RATIONAL_DATA"))
    ap.add_argument("--datasets", default="hatn:kitchen,hatn:books,hatn:dvd,hatn:electronics")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--configs", default="tfidf,fasttext,default-t20")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE override of every configuration")
    ap.add_argument("--tag", default="", help="a suffix of the configuration names (with --set)")
    ap.add_argument("--minilm", help="folder of MiniLM teacher model folders, one per domain")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON-lines file of rows (appended, resumable)")
    ap.add_argument("--summary", action="store_true", help="print the tables of --out and stop")
    args = ap.parse_args()
    out = Path(args.out)
    if args.summary:
        seeds = {int(x) for x in args.seeds.split(",")}  # tfidf is deterministic: one row per dataset
        print(summary([r for r in read_rows(out) if r["seed"] in seeds or r["config"] == "tfidf"]))
        return
    import torch
    from _provenance import provenance

    from sparse_rational.data import load_dataset

    torch.set_num_threads(args.threads)
    sets = {}
    for item in args.set:
        key, _, value = item.partition("=")
        sets[key] = float(value) if key not in ("vectors", "readout", "teacher", "transfer") else value
        if key == "augment":
            sets[key] = int(float(value))
    done = {(r["dataset"], r["seed"], r["config"]) for r in read_rows(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        splits = load_dataset(dataset, data_dir=args.data_dir, split_seed=args.split_seed)
        domain = dataset.split(":", 1)[1]
        for seed in (int(s) for s in args.seeds.split(",")):
            for config in args.configs.split(","):
                name = config + args.tag
                if (dataset, seed, name) in done or (config == "tfidf" and seed != int(args.seeds.split(",")[0])):
                    continue
                t0 = time.perf_counter()
                if config == "tfidf":
                    row = run_tfidf(splits, domain)
                elif config == "fasttext":
                    row = run_fasttext(splits, domain, seed)
                else:
                    row = run_ours(config, dataset, splits, seed, args, sets)
                row = {"dataset": dataset, "split_seed": args.split_seed, "seed": seed, "config": name, **row}
                row["provenance"] = provenance()
                with out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{dataset} seed {seed} {name}: test {row['test_accuracy']:.4f} dev {row['dev_accuracy']:.4f} "
                    f"contrast {row['contrast']['accuracy']:.3f} held-out {row['heldout']['accuracy']:.3f} "
                    f"{row.get('structure') or ''} "
                    f"({time.perf_counter() - t0:.0f}s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""End-to-end prediction, side by side on the same documents (issue 13).

    nice -n 10 python benchmarks/predict_e2e.py --models M24X4 M20 [--docs FILE] \
        [--json docs/results/predict_e2e.json] [--markdown docs/results/predict_e2e.md]

Each system reads the same documents (default: the 6,000 amazon-hatn kitchen reviews of
``$SPARSE_RATIONAL_DATA``, repeated 4 times = 24,000) in a fresh process, timed from its
start to its exit (``wall_s``; docs/s = documents / wall_s) with its peak resident memory
(``os.wait4``'s ``ru_maxrss``); the model's size on disk is reported too. Rows:

* ``sparse-rational predict``, per model folder given (``--models``): the command line
  (``python -m sparse_rational predict --model M DOCS > /dev/null``, what the
  ``sparse-rational`` script runs), default options
  (the compiled kernels of ``sparse_rational/native``), with ``--threads 2``, with
  ``SPARSE_RATIONAL_NATIVE=0`` (the numpy recurrence and the Python tokenizer), and with
  ``SPARSE_RATIONAL_IMPL=cpp`` (the PyTorch path with the C++ kernel, i.e. the path
  prediction took before the folded table); with ``--workers N`` (for each N given to
  ``--workers``; ``--workers-only`` keeps only these rows and the default one);
* ``fastText supervised`` (bigrams; trained here on the kitchen training split of the
  Blitzer release, pre-tokenised with :func:`sparse_rational.data.tokenize`; prediction
  through the Python API on pre-tokenised text, tokenisation not timed), if ``fasttext``
  is installed;
* ``TF-IDF 1-2-gram + logistic regression`` (scikit-learn, trained on the same split;
  vectorising included), if scikit-learn is installed.

For the two baselines ``predict_s`` is also given: the prediction call alone, inside the
process (no start-up, no model load), as the issue measured them. fastText and
scikit-learn are optional benchmark dependencies (skipped when absent).

Every process runs ``--repeat`` times (default 3), the systems taking turns, and the row
gives the median wall time (and the largest peak memory): the machine is shared and noisy.
Children may write bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped, as an
installed package has them) and one warm-up run precedes the timed ones.

``--breakdown`` adds, per model, where the time of one ``predict`` goes inside the process
(median of the repeats): start-up and imports, loading the model, reading the lines,
tokenising, the recurrence, formatting the JSON lines. It is what bounds the ratio between
a small and a large model: every stage but the recurrence costs both the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FASTTEXT_CHILD = """
import sys, time, fasttext
t0 = time.perf_counter()
model = fasttext.load_model(sys.argv[1])
docs = open(sys.argv[2], encoding="utf-8").read().splitlines()
t1 = time.perf_counter()
labels, probs = model.predict(docs)
t2 = time.perf_counter()
with open(sys.argv[3], "w") as out:
    out.writelines(f"{l[0]}\\t{p[0]}\\n" for l, p in zip(labels, probs))
print(f"predict_s={t2 - t1}", file=sys.stderr)
"""

TFIDF_CHILD = """
import pickle, sys, time
model = pickle.load(open(sys.argv[1], "rb"))
docs = open(sys.argv[2], encoding="utf-8").read().splitlines()
t1 = time.perf_counter()
probs = model.predict_proba(docs)
t2 = time.perf_counter()
with open(sys.argv[3], "w") as out:
    out.writelines(f"{p.argmax()}\\t{p.max()}\\n" for p in probs)
print(f"predict_s={t2 - t1}", file=sys.stderr)
"""


# The baselines are trained in children too: a child forked from a parent that grew (a
# 766 MB fastText model) reports the parent's peak as its own ru_maxrss.
TRAIN_FASTTEXT = """
import sys, fasttext
model = fasttext.train_supervised(sys.argv[1], wordNgrams=2, epoch=25, lr=0.5, verbose=0)
model.save_model(sys.argv[2])
"""

TRAIN_TFIDF = """
import json, pickle, sys
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
texts, labels = json.load(open(sys.argv[1], encoding="utf-8"))
pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10.0))
pipe.fit(texts, labels)
open(sys.argv[2], "wb").write(pickle.dumps(pipe))
"""

BREAKDOWN_CHILD = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from sparse_rational.cli import _json_lines
from sparse_rational.folded import load_folded
t1 = time.perf_counter()
clf = load_folded(sys.argv[1])
t2 = time.perf_counter()
with open(sys.argv[2], "rb") as fh:
    texts = [line.decode("utf-8").removesuffix("\\n") for line in fh]
t3 = time.perf_counter()
total = {"encode": 0.0, "recurrence": 0.0, "output": 0.0}
for k in range(0, len(texts), int(sys.argv[3])):
    batch = texts[k : k + int(sys.argv[3])]
    a = time.perf_counter()
    ids, lengths, known = clf._encode(batch, 0)
    b = time.perf_counter()
    probs = clf.model.proba(ids, lengths)
    c = time.perf_counter()
    _json_lines(clf.classes, probs, known)
    total["encode"] += b - a; total["recurrence"] += c - b; total["output"] += time.perf_counter() - c
stages = " ".join(f"{k}={v}" for k, v in total.items())
print(f"imports={t1 - t0} load={t2 - t1} read={t3 - t2} {stages}", file=sys.stderr)
"""


def run_child(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> dict:
    """Run ``cmd`` to its end: wall seconds, CPU seconds (user + system, its workers included),
    peak resident MB, its stderr's ``predict_s=``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-500:]}")
    row = {
        "wall_s": round(wall, 3),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),  # the process and the children it waited for
    }
    for line in err.splitlines():
        if line.startswith("predict_s="):
            row["predict_s"] = round(float(line.split("=")[1]), 3)
        if line.startswith("imports="):
            row["stages_s"] = {k: float(v) for k, v in (part.split("=") for part in line.split())}
    return row


def median_runs(jobs: list[tuple[str, list[str], dict]], repeat: int) -> dict[str, dict]:
    """Run every job once to warm up, then ``repeat`` times, the jobs taking turns: per job,
    the median wall time, the largest peak memory, the median ``predict_s`` and stages."""
    for _, cmd, env in jobs:
        run_child(cmd, env)
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in jobs}
    for _ in range(repeat):
        for name, cmd, env in jobs:
            runs[name].append(run_child(cmd, env))
    out = {}
    for name, rs in runs.items():
        row = {
            "wall_s": round(statistics.median(r["wall_s"] for r in rs), 3),
            "peak_mb": max(r["peak_mb"] for r in rs),
            "wall_s_runs": [r["wall_s"] for r in rs],
            "cpu_s": round(statistics.median(r["cpu_s"] for r in rs), 3),
        }
        if all("predict_s" in r for r in rs):
            row["predict_s"] = round(statistics.median(r["predict_s"] for r in rs), 3)
        if all("stages_s" in r for r in rs):
            row["stages_s"] = {k: round(statistics.median(r["stages_s"][k] for r in rs), 3) for k in rs[0]["stages_s"]}
        out[name] = row
    return out


def folder_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2)


def default_docs(tmp: Path) -> Path:
    data = Path(os.environ.get("SPARSE_RATIONAL_DATA", REPO.parent / "shared" / "data"))
    kitchen = data / "amazon-hatn" / "kitchen"
    lines = []
    for part in ("review_positive", "review_negative"):
        lines += (kitchen / part).read_text(encoding="utf-8").splitlines()
    path = tmp / "docs.txt"
    path.write_text("".join(line + "\n" for line in lines * 4), encoding="utf-8")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="sparse-rational model folders (static vectors)")
    ap.add_argument("--docs", help="one document per line (default: amazon-hatn kitchen x 4)")
    ap.add_argument("--split-seed", type=int, default=0, help="kitchen split the baselines train on")
    ap.add_argument("--no-torch-path", action="store_true", help="skip the SPARSE_RATIONAL_IMPL=cpp rows")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per system (the median is reported)")
    ap.add_argument("--workers", type=int, nargs="+", help="also rows of predict --workers N for each N given")
    ap.add_argument(
        "--workers-only",
        action="store_true",
        help="only the default row and the --workers rows of each model (no baselines, no other variants)",
    )
    ap.add_argument("--breakdown", action="store_true", help="also time the stages of predict inside one process")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from sparse_rational.data import load_dataset, tokenize

    tmp = Path(tempfile.mkdtemp(prefix="predict_e2e_"))
    docs = Path(args.docs) if args.docs else default_docs(tmp)
    texts = docs.read_text(encoding="utf-8").splitlines()
    n = len(texts)
    words = sum(len(t.split()) for t in texts) / max(n, 1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("SPARSE_RATIONAL_IMPL", "SPARSE_RATIONAL_NATIVE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    rows: list[dict] = []

    def add(system: str, model_mb: float, row: dict, **extra) -> None:
        row = {"system": system, "docs": n, "docs_per_s": round(n / row["wall_s"]), "model_mb": model_mb, **row}
        if "predict_s" in row:
            row["predict_docs_per_s"] = round(n / row["predict_s"])
        row.update(extra)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    jobs: list[tuple[str, list[str], dict]] = []
    sizes: dict[str, float] = {}
    transitions: dict[str, int] = {}

    for folder in map(Path, args.models):
        cfg = json.loads((folder / "config.json").read_text())
        transitions[folder.name] = sum(cfg["model"]["structure"])
        name = f"sparse-rational predict {folder.name} ({transitions[folder.name]} transitions)"
        cmd = [sys.executable, "-m", "sparse_rational", "predict", "--model", str(folder), str(docs)]
        variants = [(name, cmd, env)]
        if not args.workers_only:
            variants.append((name + " --threads 2", [*cmd, "--threads", "2"], env))
            variants.append((name + " [numpy, no compiled kernels]", cmd, {**env, "SPARSE_RATIONAL_NATIVE": "0"}))
        for count in args.workers or ():
            variants.append((name + f" --workers {count}", [*cmd, "--workers", str(count)], env))
        if not args.no_torch_path and not args.workers_only:
            variants.append((name + " [PyTorch path, cpp kernel]", cmd, {**env, "SPARSE_RATIONAL_IMPL": "cpp"}))
        if args.breakdown:
            code = [sys.executable, "-c", BREAKDOWN_CHILD, str(folder), str(docs), "2048"]
            variants.append((name + " [stages]", code, env))
        for v in variants:
            sizes[v[0]] = folder_mb(folder)
        jobs += variants

    if not args.workers_only:  # the baselines' training data
        splits = load_dataset("amazon:kitchen", None, args.split_seed)
        train_texts = [ex.text for ex in splits.train]
        train_labels = [ex.label for ex in splits.train]
    if args.workers_only:
        pass
    elif importlib.util.find_spec("fasttext") is None:
        print("fastText not installed: skipped (pip install fasttext-wheel)", file=sys.stderr)
    else:
        train_file = tmp / "ft_train.txt"
        train_file.write_text(
            "".join(f"__label__{y} {' '.join(tokenize(x))}\n" for x, y in zip(train_texts, train_labels)),
            encoding="utf-8",
        )
        model_path = tmp / "fasttext.bin"
        subprocess.run([sys.executable, "-c", TRAIN_FASTTEXT, str(train_file), str(model_path)], check=True, env=env)
        pre = tmp / "docs_tokenized.txt"
        pre.write_text("".join(" ".join(tokenize(t)) + "\n" for t in texts), encoding="utf-8")
        name = "fastText supervised, bigrams (Python API, pre-tokenised)"
        sizes[name] = folder_mb(model_path)
        cmd = [sys.executable, "-c", FASTTEXT_CHILD, str(model_path), str(pre), str(tmp / "ft_out.txt")]
        jobs.append((name, cmd, env))
    if args.workers_only:
        pass
    elif importlib.util.find_spec("sklearn") is None:
        print("scikit-learn not installed: skipped", file=sys.stderr)
    else:
        train_json = tmp / "tfidf_train.json"
        train_json.write_text(json.dumps([train_texts, train_labels]), encoding="utf-8")
        model_path = tmp / "tfidf_lr.pkl"
        subprocess.run([sys.executable, "-c", TRAIN_TFIDF, str(train_json), str(model_path)], check=True, env=env)
        name = "scikit-learn TF-IDF 1-2-gram + logistic regression (vectorising included)"
        sizes[name] = folder_mb(model_path)
        cmd = [sys.executable, "-c", TFIDF_CHILD, str(model_path), str(docs), str(tmp / "tfidf_out.txt")]
        jobs.append((name, cmd, env))

    results = median_runs(jobs, args.repeat)
    for name, _, _ in jobs:
        if name.endswith("[stages]"):
            stages = results[name]["stages_s"]
            rows.append({"system": name, "docs": n, "stages_s": stages})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        else:
            add(name, sizes[name], results[name])

    header = (
        f"{n} documents ({words:.1f} words each, whitespace-separated), {os.cpu_count()} CPUs; "
        "docs/s = documents / process wall time (start to exit); predict docs/s: the prediction call alone"
    )
    lines = [
        header,
        "",
        "| system | docs/s | wall s | peak MB | model MB | predict docs/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "stages_s" in r and "docs_per_s" not in r:
            continue
        lines.append(
            f"| {r['system']} | {r['docs_per_s']:,} | {r['wall_s']:.2f} | {r['peak_mb']:.0f} | {r['model_mb']:.2f} | "
            f"{r.get('predict_docs_per_s', '')} |"
        )
    staged = [r for r in rows if "docs_per_s" not in r]
    if staged:
        keys = list(staged[0]["stages_s"])
        lines += ["", "| stage, seconds in one process | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for r in staged:
            lines.append(f"| {r['system']} | " + " | ".join(f"{r['stages_s'][k]:.3f}" for k in keys) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    if args.json:
        try:
            from _provenance import provenance
        except ImportError:
            from benchmarks._provenance import provenance
        record = {
            "results": rows,
            "documents": n,
            "words_per_document": round(words, 1),
            "provenance": provenance(argv),
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

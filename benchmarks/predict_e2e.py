"""End-to-end prediction, side by side on the same documents (issue 13).

    nice -n 10 python benchmarks/predict_e2e.py --models M24X4 M20 [--docs FILE] \
        [--json docs/results/predict_e2e.json] [--markdown docs/results/predict_e2e.md]

Each system reads the same documents (default: the 6,000 amazon-hatn kitchen reviews of
``$SPARSE_RATIONAL_DATA``, repeated 4 times = 24,000) in a fresh process, timed from its
start to its exit (``wall_s``; docs/s = documents / wall_s) with its peak resident memory
(``os.wait4``'s ``ru_maxrss``); the model's size on disk is reported too. Rows:

* ``sparse-rational predict``, per model folder given (``--models``): the command line
  (``python -m sparse_rational.cli predict --model M DOCS > /dev/null``), default options,
  and with ``--threads 2``; and the same with ``SPARSE_RATIONAL_IMPL=cpp`` (the PyTorch path
  with the C++ kernel, i.e. the path prediction took before the folded table);
* ``fastText supervised`` (bigrams; trained here on the kitchen training split of the
  Blitzer release, pre-tokenised with :func:`sparse_rational.data.tokenize`; prediction
  through the Python API on pre-tokenised text, tokenisation not timed), if ``fasttext``
  is installed;
* ``TF-IDF 1-2-gram + logistic regression`` (scikit-learn, trained on the same split;
  vectorising included), if scikit-learn is installed.

For the two baselines ``predict_s`` is also given: the prediction call alone, inside the
process (no start-up, no model load), as the issue measured them. fastText and
scikit-learn are optional benchmark dependencies (skipped when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
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


def run_child(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> dict:
    """Run ``cmd`` to its end: wall seconds, peak resident MB, its stderr's ``predict_s=``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-500:]}")
    row = {"wall_s": round(wall, 3), "peak_mb": round(usage.ru_maxrss / 1024, 1)}
    for line in err.splitlines():
        if line.startswith("predict_s="):
            row["predict_s"] = round(float(line.split("=")[1]), 3)
    return row


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
    env.pop("SPARSE_RATIONAL_IMPL", None)
    rows = []

    def add(system: str, model_mb: float, row: dict, **extra) -> None:
        row = {"system": system, "docs": n, "docs_per_s": round(n / row["wall_s"]), "model_mb": model_mb, **row}
        if "predict_s" in row:
            row["predict_docs_per_s"] = round(n / row["predict_s"])
        row.update(extra)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    for folder in map(Path, args.models):
        cfg = json.loads((folder / "config.json").read_text())
        name = f"sparse-rational predict {folder.name} ({sum(cfg['model']['structure'])} transitions)"
        cmd = [sys.executable, "-m", "sparse_rational.cli", "predict", "--model", str(folder), str(docs)]
        add(name, folder_mb(folder), run_child(cmd, env))
        add(name + " --threads 2", folder_mb(folder), run_child([*cmd, "--threads", "2"], env))
        if not args.no_torch_path:
            torch_env = {**env, "SPARSE_RATIONAL_IMPL": "cpp"}
            add(name + " [PyTorch path, cpp kernel]", folder_mb(folder), run_child(cmd, torch_env))

    splits = load_dataset("amazon:kitchen", None, args.split_seed)
    train_texts = [ex.text for ex in splits.train]
    train_labels = [ex.label for ex in splits.train]
    try:
        import fasttext
    except ImportError:
        print("fastText not installed: skipped (pip install fasttext-wheel)", file=sys.stderr)
    else:
        train_file = tmp / "ft_train.txt"
        train_file.write_text(
            "".join(f"__label__{y} {' '.join(tokenize(x))}\n" for x, y in zip(train_texts, train_labels)),
            encoding="utf-8",
        )
        model = fasttext.train_supervised(str(train_file), wordNgrams=2, epoch=25, lr=0.5, verbose=0)
        model_path = tmp / "fasttext.bin"
        model.save_model(str(model_path))
        pre = tmp / "docs_tokenized.txt"
        pre.write_text("".join(" ".join(tokenize(t)) + "\n" for t in texts), encoding="utf-8")
        cmd = [sys.executable, "-c", FASTTEXT_CHILD, str(model_path), str(pre), str(tmp / "ft_out.txt")]
        add("fastText supervised, bigrams (Python API, pre-tokenised)", folder_mb(model_path), run_child(cmd, env))
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
    except ImportError:
        print("scikit-learn not installed: skipped", file=sys.stderr)
    else:
        pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10.0))
        pipe.fit(train_texts, train_labels)
        model_path = tmp / "tfidf_lr.pkl"
        model_path.write_bytes(pickle.dumps(pipe))
        cmd = [sys.executable, "-c", TFIDF_CHILD, str(model_path), str(docs), str(tmp / "tfidf_out.txt")]
        add(
            "scikit-learn TF-IDF 1-2-gram + logistic regression (vectorising included)",
            folder_mb(model_path),
            run_child(cmd, env),
        )

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
        lines.append(
            f"| {r['system']} | {r['docs_per_s']:,} | {r['wall_s']:.2f} | {r['peak_mb']:.0f} | {r['model_mb']:.2f} | "
            f"{r.get('predict_docs_per_s', '')} |"
        )
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

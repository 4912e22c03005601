"""The demo page: its size and its time to first result in headless Chromium.

    python benchmarks/web_page.py --model runs/kitchen20 [--vocab-rows 50000] [--loads 7] [--json FILE]

Builds the page with ``sparse-rational demo`` (Table 1 from the dataset the model records,
unless ``--no-table``), then opens it ``--loads`` times from a ``file://`` URL with
``#text=<a kitchen review>`` and ``--dump-dom``. Per load: ``data-ms`` (the page's own clock,
from the start of navigation to the result written: parse the HTML, decode the model,
tokenize, score, explain), ``data-score-ms`` (the scoring alone) and the wall time of the
whole Chromium process (start-up included). ``--vocab-rows N`` first grows a copy of the
model's vocabulary to N rows with GloVe 6B 50d words (L2-normalised, as the model's own), a
valid model with the same function on its old words: the size the issue asks the page to
stay usable at.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

try:  # run as a script (python benchmarks/NAME.py): this folder is on sys.path
    from _provenance import provenance
except ImportError:  # imported as benchmarks.NAME
    from ._provenance import provenance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

REVIEW = (
    "I bought this skillet a month ago. It heats evenly and cleans up easily, but the handle gets hot "
    "and the nonstick coating is already scratched. Not worth the price."
)


def grow_vocabulary(model: Path, rows: int, out: Path) -> Path:
    """A copy of ``model`` whose vocabulary has ``rows`` rows (extra GloVe words appended)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from sparse_rational.embeddings.static import load_word_vectors

    shutil.copytree(model, out)
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    have = set(vocab)
    glove = load_word_vectors("glove-6b-50d")
    extra = [w for w in glove.words if w not in have and "\n" not in w][: max(0, rows - len(vocab))]
    vectors = np.asarray(glove.vectors[[glove.index[w] for w in extra]], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tensors = load_file(str(out / "model.safetensors"))
    tensors["embeddings"] = torch.cat([tensors["embeddings"], torch.from_numpy(vectors)])
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "sparse-rational/1"})
    (out / "vocab.txt").write_text("".join(w + "\n" for w in vocab + extra), encoding="utf-8")
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["vocab_size"] = len(vocab) + len(extra)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--vocab-rows", type=int, default=0)
    p.add_argument("--loads", type=int, default=7)
    p.add_argument("--no-table", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from test_web_helpers import open_with_text

    work = Path(tempfile.mkdtemp(prefix="web-page-"))
    try:
        model = Path(args.model)
        if args.vocab_rows:
            model = grow_vocabulary(model, args.vocab_rows, work / "model")
        page = work / "page.html"
        cmd = [sys.executable, "-m", "sparse_rational.cli", "demo", "--model", str(model), "--out", str(page)]
        start = time.perf_counter()
        subprocess.run(cmd + (["--no-table"] if args.no_table else []), check=True)
        build_s = time.perf_counter() - start
        loads = []
        for _ in range(args.loads):
            start = time.perf_counter()
            got = open_with_text(page.as_uri(), REVIEW, work / "profile")
            wall = time.perf_counter() - start
            loads.append({"ms": got["ms"], "wall_s": wall, "label": got["label"]})
        vocab_rows = len((model / "vocab.txt").read_text(encoding="utf-8").splitlines())
        result = {
            "model": args.model,
            "vocab_rows": vocab_rows,
            "page_bytes": page.stat().st_size,
            "build_s": round(build_s, 2),
            "first_result_ms_median": statistics.median(x["ms"] for x in loads),
            "first_result_ms_min": min(x["ms"] for x in loads),
            "chromium_wall_s_median": round(statistics.median(x["wall_s"] for x in loads), 3),
            "loads": loads,
            "provenance": provenance(),
        }
        # the scoring alone, from one more load's data-score-ms
        from test_web_helpers import chromium, elements

        dom = chromium(
            ["--virtual-time-budget=10000", "--dump-dom", page.as_uri() + "#text=" + urllib.parse.quote(REVIEW)],
            work / "profile",
        )
        result["score_ms"] = float(elements(dom).by_id["prediction"].get("data-score-ms") or "nan")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

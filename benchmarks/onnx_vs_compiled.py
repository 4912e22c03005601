"""onnxruntime against the compiled folded path on the same token ids (issue 30).

    nice -n 5 python benchmarks/onnx_vs_compiled.py --model M20 [--docs FILE] [--repeat 3] \
        [--json docs/results/onnx_vs_compiled.json] [--markdown docs/results/onnx_vs_compiled.md]

The documents (default: the 6,000 amazon-hatn kitchen reviews of ``$SPARSE_RATIONAL_DATA``
repeated 4 times = 24,000, as ``benchmarks/predict_e2e.py`` reads them) are tokenized once
(``predict``'s tokenizer and default ``--max-tokens``); every system then scores the same
token ids in this process, and the table gives docs/s = documents / seconds of the scoring
alone (no start-up, no tokenizing, no output), the best of ``--repeat`` runs taking turns
(the machine is shared), and the largest difference of its probabilities from the
compiled path's:

* ``compiled``: :meth:`FoldedModel.proba <sparse_rational.folded.FoldedModel.proba>` with
  the C recurrence of ``sparse_rational/native`` (one thread), in batches of 2,048
  documents as ``predict`` scores them;
* ``numpy``: the same without the compiled kernels (``SPARSE_RATIONAL_NATIVE=0``'s path);
* ``onnxruntime``: the exported ``model.onnx`` (``export --format onnx``), the documents in
  length-sorted batches of ``--onnx-batch`` rows padded to their longest (padding, the
  copies into the padded matrix and the session calls are timed), with 1 intra-op thread
  and with onnxruntime's default (all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_docs() -> list[str]:
    data = Path(os.environ.get("SPARSE_RATIONAL_DATA", REPO.parent / "shared" / "data"))
    kitchen = data / "amazon-hatn" / "kitchen"
    lines: list[str] = []
    for part in ("review_positive", "review_negative"):
        lines += (kitchen / part).read_text(encoding="utf-8").splitlines()
    return lines * 4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a one-layer model folder on static word vectors")
    ap.add_argument("--docs", help="one document per line (default: amazon-hatn kitchen x 4)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per system (the best is reported)")
    ap.add_argument("--onnx-batch", type=int, default=256, help="rows per onnxruntime call (default 256)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import numpy as np
    import onnxruntime as ort

    from sparse_rational import config
    from sparse_rational.export.onnx_graph import OnnxClassifier, export_onnx
    from sparse_rational.folded import load_folded

    texts = Path(args.docs).read_text(encoding="utf-8").splitlines() if args.docs else default_docs()
    n = len(texts)
    folded = load_folded(args.model)
    if folded is None:
        raise SystemExit(f"{args.model}: not a one-layer model on static word vectors")
    max_tokens = int(config.default(config.TrainConfig, "max_tokens"))
    flat, lengths = folded.encode(texts, max_tokens)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    batches = [(flat[starts[k] : starts[min(k + 2048, n)]], lengths[k : k + 2048]) for k in range(0, n, 2048)]
    tmp = Path(tempfile.mkdtemp(prefix="onnx_bench_"))
    export_onnx(folded, tmp / "onnx", max_tokens)
    one = ort.SessionOptions()
    one.intra_op_num_threads = 1
    one.inter_op_num_threads = 1
    sessions = {
        "onnxruntime, 1 thread": OnnxClassifier(tmp / "onnx" / "model.onnx", one),
        "onnxruntime, default threads": OnnxClassifier(tmp / "onnx" / "model.onnx"),
    }

    def folded_path(compiled: bool):
        def run() -> np.ndarray:
            folded.model.compiled = compiled
            try:
                return np.concatenate([folded.model.proba(ids, lens) for ids, lens in batches])
            finally:
                folded.model.compiled = True

        return run

    systems = {
        "compiled (C recurrence, 1 thread)": folded_path(True),
        "numpy (no compiled kernels)": folded_path(False),
    }
    for name, session in sessions.items():
        systems[name] = lambda s=session: s.proba_of_rows(flat, lengths, args.onnx_batch)
    reference = systems["compiled (C recurrence, 1 thread)"]()
    for run in systems.values():  # warm-up: the kernels' build, the sessions' first calls
        run()
    times: dict[str, list[float]] = {name: [] for name in systems}
    diffs: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, run in systems.items():
            start = time.perf_counter()
            probs = run()
            times[name].append(time.perf_counter() - start)
            diffs[name] = float(np.abs(probs - reference).max())
    rows = [
        {
            "system": name,
            "docs": n,
            "seconds": round(min(ts), 4),
            "seconds_runs": [round(t, 4) for t in ts],
            "docs_per_s": round(n / min(ts)),
            "max_abs_diff_vs_compiled": diffs[name],
        }
        for name, ts in times.items()
    ]
    tokens = int(lengths.sum())
    header = (
        f"{n} documents, {tokens} token ids ({tokens / n:.1f} per document, <s> and </s> included), "
        f"model {args.model} ({folded.model.transitions} transitions, readout {folded.model.readout}), "
        f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs; docs/s = documents / seconds of scoring the "
        f"token ids, best of {args.repeat}"
    )
    lines = [header, "", "| system | docs/s | seconds | max abs diff vs compiled |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['docs_per_s']:,} | {r['seconds']:.3f} | {r['max_abs_diff_vs_compiled']:.2g} |"
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
            "tokens": tokens,
            "transitions": folded.model.transitions,
            "readout": folded.model.readout,
            "onnx_batch": args.onnx_batch,
            "onnxruntime": ort.__version__,
            "provenance": provenance(argv),
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

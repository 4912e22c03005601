"""Training speed of stacked and bidirectional layers against the single-layer kernel.

    python benchmarks/deep.py [--json FILE] [--threads 1] [--T 256] [--B 32] [--e 50]

One step = forward + backward of the same loss (scores -> linear layer -> cross-entropy),
float32, frozen inputs. Rows (timed round-robin in one run, so that the machine's load
hits all of them alike; median milliseconds per step):

* ``layer/final/<impl>``   one layer, its readout at the end (the single-layer kernel)
* ``layer/steps/<impl>``   one layer returning every step's scores ``[T, B, d]`` (what a
                           lower layer hands up), the same loss on their sum over time
* ``model/1layer``         RationalClassifier, one left-to-right layer of ``d x n``
* ``model/2layers``        two stacked layers of ``d x n`` each (layer 2 reads d scores)
* ``model/bidir``          one bidirectional layer, ``d x n`` per direction

``--json`` writes ``{"results": {row: ms}, "ratios": {...}, "settings", "provenance"}``.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from sparse_rational.layout import StateLayout
from sparse_rational.model import ModelConfig, RationalClassifier
from sparse_rational.ops import IMPLEMENTATIONS, STEP_IMPLEMENTATIONS, cpp_available

try:  # run as a script (python benchmarks/NAME.py): this folder is on sys.path
    from _provenance import provenance
    from recurrence import time_round_robin
except ImportError:  # imported as benchmarks.NAME
    from benchmarks._provenance import provenance
    from benchmarks.recurrence import time_round_robin


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--e", type=int, default=50)
    ap.add_argument("--d", type=int, default=24)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per row")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T, B, e, d, n = args.T, args.B, args.e, args.d, args.n
    N = d * n
    layout = StateLayout.of((n,) * d)
    x = torch.randn(T, B, e) / e**0.5
    w, v = (torch.randn(e, N, requires_grad=True) for _ in range(2))
    b = torch.zeros(N, requires_grad=True)
    head = torch.nn.Linear(d, 2)
    y = torch.randint(0, 2, (B,))
    owner = layout.owner()
    impls = ["cpp", "scan"] if cpp_available() else ["scan"]
    runs = {}
    for impl in impls:

        def final(impl=impl):
            states = IMPLEMENTATIONS[impl](x, w, v, b, layout, None, readout="final")
            scores = states.new_zeros(B, d).index_add_(1, owner, states)
            F.cross_entropy(head(scores), y).backward()

        def steps(impl=impl):
            F.cross_entropy(head(STEP_IMPLEMENTATIONS[impl](x, w, v, b, layout, None).sum(0)), y).backward()

        runs[f"layer/final/{impl}"], runs[f"layer/steps/{impl}"] = final, steps
    vectors = x.transpose(0, 1).contiguous()
    mask = torch.ones(B, T, dtype=torch.bool)
    for name, extra in (("1layer", {}), ("2layers", {"layers": 2}), ("bidir", {"bidirectional": True})):
        model = RationalClassifier(ModelConfig((n,) * d, e, 2, readout="final", **extra))  # type: ignore[arg-type]

        def step(model=model):
            F.cross_entropy(model.forward_vectors(vectors, mask), y).backward()

        runs[f"model/{name}"] = step
    ms = time_round_robin(runs, budget_s=args.budget)
    ratios = {f"steps/final ({impl})": ms[f"layer/steps/{impl}"] / ms[f"layer/final/{impl}"] for impl in impls} | {
        f"{m}/1layer": ms[f"model/{m}"] / ms["model/1layer"] for m in ("2layers", "bidir")
    }
    for row, value in ms.items():
        print(f"{row:22s} {value:8.1f} ms  ({B * T / value * 1e3:,.0f} tokens/s)")
    for row, value in ratios.items():
        print(f"{row:22s} {value:8.2f}x")
    out = {
        "results": ms,
        "ratios": ratios,
        "settings": {"T": T, "B": B, "e": e, "d": d, "n": n, "threads": args.threads},
        "provenance": provenance(argv),
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()

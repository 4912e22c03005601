"""Forward+backward throughput of one WFSA layer, every implementation in one run.

    python benchmarks/recurrence.py [--json FILE] [--threads 2] [--T 256 1024]
                                    [--impls cpp scan] [--readout final mean max]

One step = projection matmul + recurrence + the same loss (WFSA scores -> linear layer
-> cross-entropy) + backward, float32, inputs frozen (``x`` needs no gradient, as with
frozen word vectors). ``--readout`` (default ``final``) runs the implementations of
:mod:`sparse_rational.ops` once per readout (``final``: the states at the last token;
``mean``/``max``: pooled over the tokens, see ``ops/reference.py``) and reports each
pooled readout's time relative to ``final`` (issue 17: within 10 %). Rows (``impl``):

* ``reference``     :func:`sparse_rational.ops.rational_forward_ref` (loop, ``unbind`` reads)
* ``authors_loop``  the authors' style: indexed ``u[t]`` reads, indexed writes of every
                    ``c(t)`` into one tensor (quadratic backward through the in-place copies);
                    final readout only
* ``scan``          parallel scan per state level, custom backward
* ``cpp``           fused C++ kernel
* ``lstm24``        ``nn.LSTM(e, 24)`` on the same input, last hidden state, same loss
* ``bound``         the input matmul + sigmoid (of all 2N columns) + the same loss (on
                    the sigmoids summed over time), forward and backward, no recurrence

Rows of one T are timed round-robin (one step of each implementation in turn), so that
load from other processes on the machine hits all of them alike.

Reports the median milliseconds per step and tokens (``B * T``) per second; ``--json``
writes ``{"results": [{"impl", "readout", "B", "T", "e", "d", "n", "bias", "ms_per_step", "tokens_per_s"}],
"readout_ratios": [{"impl", "T", "readout", "ratio_to_final"}], "threads", "torch", "provenance"}``
(command, git commit, CPU, versions, date: see ``_provenance.py``); ``readout`` is null for
``lstm24`` and ``bound``, which have none.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from sparse_rational.ops import IMPLEMENTATIONS, READOUTS, build_error, cpp_available
from sparse_rational.ops.reference import shift_states, transition_weights
from sparse_rational.semiring import PLUS_TIMES

try:  # run as a script (python benchmarks/NAME.py): this folder is on sys.path
    from _provenance import cpu_model, provenance
except ImportError:  # imported as benchmarks.NAME
    from benchmarks._provenance import cpu_model, provenance


def authors_loop(x, w, v, b, is_first, mask=None):
    """The authors' style (Peng et al. 2018 CPU path): indexed reads of the step inputs and
    indexed writes of every step's states into one preallocated tensor."""
    T, B, _ = x.shape
    u, f = transition_weights(x, w, v, b)
    N = w.shape[1]
    cs = x.new_zeros(T, B, N)
    c = x.new_zeros(B, N)
    for t in range(T):
        prev = shift_states(PLUS_TIMES, (c,), is_first)[0]
        c_new = f[t] * c + u[t] * prev
        c = c_new if mask is None else torch.where(mask[t][:, None], c_new, c)
        cs[t] = c
    return cs[T - 1]


def make_problem(T, B, e, d, n, seed=0, bias=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, e, generator=g)
    x = x / x.norm(dim=-1, keepdim=True)  # L2-normalised word vectors, as the authors
    bound = math.sqrt(3.0 / e)
    N = d * n
    w = (torch.rand(e, N, generator=g) * 2 - 1).mul_(bound).requires_grad_()
    v = (torch.rand(e, N, generator=g) * 2 - 1).mul_(bound).requires_grad_()
    b = torch.full((N,), float(bias), requires_grad=True)
    is_first = torch.tensor([i == 0 for _ in range(d) for i in range(n)])
    clf = nn.Linear(d, 2)
    y = torch.randint(0, 2, (B,), generator=g)
    return x, w, v, b, is_first, clf, y


NO_READOUT = ("lstm24", "bound")  # rows without a readout (one row per T)
FINAL_ONLY = ("authors_loop",)


def step_fn(impl, problem, d, n, readout="final"):
    x, w, v, b, is_first, clf, y = problem
    T, B, e = x.shape
    params = [w, v, b, *clf.parameters()]

    def loss_of(states):  # [B, d*n] -> WFSA scores [B, d] -> logits -> cross-entropy
        return F.cross_entropy(clf(states.view(B, d, n).sum(-1)), y)

    if impl == "bound":

        def step():  # matmul, sigmoid of all 2N columns, sum over time, the same loss
            proj = x.reshape(T * B, e) @ torch.cat([w, v], 1)
            f = torch.sigmoid(proj + torch.cat([b, b]))
            loss_of(f.view(T, B, 2, d * n).sum((0, 2))).backward()
    elif impl == "lstm24":
        lstm = nn.LSTM(e, d)
        params += list(lstm.parameters())

        def step():
            _, (h, _) = lstm(x)
            F.cross_entropy(clf(h[-1]), y).backward()
    elif impl == "authors_loop":

        def step():
            loss_of(authors_loop(x, w, v, b, is_first, None)).backward()
    else:
        fn = IMPLEMENTATIONS[impl]

        def step():
            loss_of(fn(x, w, v, b, is_first, None, readout=readout)).backward()

    def run():
        for p in params:
            p.grad = None
        step()

    return run


def time_round_robin(runs: dict, min_repeats=3, max_repeats=30, budget_s=3.0) -> dict:
    """Median ms per step of each run, timed in turns; each gets ``budget_s`` seconds (at
    least ``min_repeats``, at most ``max_repeats`` steps) after two warm-up steps."""
    for run in runs.values():
        run()  # warm-up (and the C++ build)
        run()
    times = {name: [] for name in runs}
    spent = {name: 0.0 for name in runs}
    while True:
        todo = [k for k in runs if len(times[k]) < min_repeats or (len(times[k]) < max_repeats and spent[k] < budget_s)]
        if not todo:
            break
        for name in todo:
            t0 = time.perf_counter()
            runs[name]()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            spent[name] += dt
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--T", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--e", type=int, default=300)
    ap.add_argument("--d", type=int, default=24)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--impls", nargs="+", default=["reference", "authors_loop", "scan", "cpp", "lstm24", "bound"])
    ap.add_argument(
        "--readout",
        nargs="+",
        choices=READOUTS,
        default=["final"],
        help="readouts to time for each implementation of sparse_rational.ops (default: final)",
    )
    ap.add_argument(
        "--bias",
        type=float,
        default=0.0,
        help="initial b (0 = the model's init: f ~ 0.5, so gradients decay like 2^-t and "
        "paths that do not flush them hit slow denormals; 3: f ~ 0.95, they do not)",
    )
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per row (at least 5 steps)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    impls = list(args.impls)
    if "cpp" in impls and not cpp_available():
        print(f"# cpp skipped: {build_error()}")
        impls.remove("cpp")
    readouts = list(dict.fromkeys(args.readout))
    rows = []  # (impl, readout) in the order they are printed
    for impl in impls:
        if impl in NO_READOUT:
            rows.append((impl, None))
        else:
            rows += [(impl, r) for r in readouts if impl not in FINAL_ONLY or r == "final"]
    results = []
    print(
        f"# B={args.B} e={args.e} d={args.d} n={args.n} b0={args.bias:g} float32, {args.threads} threads, "
        f"torch {torch.__version__}, {cpu_model()}"
    )
    print(f"{'impl':<14}{'readout':<9}{'T':>6}{'ms/step':>11}{'tokens/s':>12}")
    for T in args.T:
        problem = make_problem(T, args.B, args.e, args.d, args.n, bias=args.bias)
        runs = {key: step_fn(key[0], problem, args.d, args.n, key[1] or "final") for key in rows}
        medians = time_round_robin(runs, budget_s=args.budget)
        for impl, readout in rows:
            ms = medians[impl, readout]
            row = dict(
                impl=impl,
                readout=readout,
                B=args.B,
                T=T,
                e=args.e,
                d=args.d,
                n=args.n,
                bias=args.bias,
                ms_per_step=round(ms, 3),
                tokens_per_s=round(args.B * T / (ms / 1e3)),
            )
            results.append(row)
            print(f"{impl:<14}{readout or '-':<9}{T:>6}{ms:>11.2f}{row['tokens_per_s']:>12,}", flush=True)

    ratios = []
    timed = {(r["impl"], r["readout"], r["T"]): r["ms_per_step"] for r in results}
    pooled = [r for r in readouts if r != "final"]
    if pooled and "final" in readouts:
        print("\n# pooled readouts against final, time per step (issue 17: within 10 %)")
        for impl, readout in rows:
            for T in args.T:
                if readout in pooled and (impl, "final", T) in timed:
                    ratio = timed[impl, readout, T] / timed[impl, "final", T]
                    ratios.append(dict(impl=impl, T=T, readout=readout, ratio_to_final=round(ratio, 3)))
                    print(f"{impl} {readout}/final at T={T}: {ratio:.3f} {'OK' if ratio <= 1.10 else 'MISSED'}")

    by = {(r["impl"], r["T"]): r for r in results if r["readout"] in (None, "final")}
    print("\n# targets (issue 3)")
    for T, need in ((256, 0.85), (1024, 0.75)):
        if ("cpp", T) in by and ("bound", T) in by:
            ratio = by["cpp", T]["tokens_per_s"] / by["bound", T]["tokens_per_s"]
            print(f"cpp / bound at T={T}: {ratio:.0%} (target >= {need:.0%}) {'OK' if ratio >= need else 'MISSED'}")
        if ("cpp", T) in by and ("authors_loop", T) in by:
            ratio = by["cpp", T]["tokens_per_s"] / by["authors_loop", T]["tokens_per_s"]
            print(f"cpp / authors_loop at T={T}: {ratio:.1f}x (target >= 8x) {'OK' if ratio >= 8 else 'MISSED'}")
    if ("cpp", 256) in by and ("cpp", 1024) in by:
        ratio = by["cpp", 1024]["ms_per_step"] / by["cpp", 256]["ms_per_step"]
        print(f"cpp time T=1024 / T=256: {ratio:.2f}x (target <= 4.5x) {'OK' if ratio <= 4.5 else 'MISSED'}")
    if args.json:
        from sparse_rational.fileio import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "results": results,
                "readout_ratios": ratios,
                "threads": args.threads,
                "torch": torch.__version__,
                "provenance": provenance(argv),
            },
        )
    return results


if __name__ == "__main__":
    main()

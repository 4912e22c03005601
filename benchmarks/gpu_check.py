"""One self-contained GPU check (a few minutes on an H200): agreement, then throughput.

    python benchmarks/gpu_check.py --json gpu.json            # CUDA (default when available)
    python benchmarks/gpu_check.py --device cpu --quick       # the same script on a CPU

1. Agreement: every implementation available on the device (``scan``, and ``triton`` when
   registered) against :func:`rational_forward_ref` run on the CPU in float64 -- outputs and
   the gradients of ``x, w, v, b`` -- in float64 and float32, for mixed structures
   ((4,4,2,1), (1,3), (3,)*6), right padding, T = 1 and B = 1.
2. Throughput: forward+backward of one layer (projection + recurrence + WFSA scores ->
   linear -> cross-entropy), float32, e = 300, d = 24, n = 4, B in {32, 256}, T in {256, 1024},
   for ``reference`` (the loop), ``scan``, ``triton`` (when it compiles), ``lstm24`` (cuDNN
   LSTM, hidden 24) and ``bound`` (the matmul + sigmoid + coupling + loss, no recurrence);
   plus the forward alone (inference) of ``scan`` and ``triton``. Medians of timed steps (CUDA-synchronised).

Prints a table; ``--json FILE`` writes ``{"device", "torch", "agreement": [...], "results": [...],
"provenance"}`` (command, git commit, CPU and GPU, versions, date: see ``_provenance.py``).
Needs only torch and this repository (the repository root is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sparse_rational.model import state_layout  # noqa: E402
from sparse_rational.ops import IMPLEMENTATIONS, rational_forward_ref  # noqa: E402

try:  # run as a script (python benchmarks/gpu_check.py): this folder is on sys.path
    from _provenance import cpu_model, provenance  # noqa: E402
except ImportError:  # imported as benchmarks.gpu_check
    from benchmarks._provenance import cpu_model, provenance  # noqa: E402

AGREE_CASES = [
    # structure, T, B, padded
    ((4, 4, 2, 1), 37, 5, True),
    ((1, 3), 64, 3, False),
    ((3,) * 6, 20, 4, True),
    ((4, 4, 2, 1), 1, 4, False),
    ((2, 5, 1), 17, 1, True),
]


def device_impls(device: torch.device) -> list[str]:
    names = ["scan"]
    if "triton" in IMPLEMENTATIONS and device.type == "cuda":
        names.append("triton")
    if "cpp" in IMPLEMENTATIONS and device.type == "cpu":
        names.append("cpp")
    return names


def make_case(structure, T, B, padded, e=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = sum(structure)
    x = torch.randn(T, B, e, generator=g, dtype=torch.float64)
    w = torch.randn(e, N, generator=g, dtype=torch.float64) * 0.7
    v = torch.randn(e, N, generator=g, dtype=torch.float64) * 0.7
    b = torch.randn(N, generator=g, dtype=torch.float64)
    is_first = state_layout(tuple(structure))[0]
    mask = None
    if padded:
        lengths = torch.tensor([max(1, T - 3 * i) for i in range(B)])
        mask = torch.arange(T)[:, None] < lengths[None, :]
    return x, w, v, b, is_first, mask


def run_with_grads(fn, x, w, v, b, is_first, mask, gout):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, v, b)]
    out = fn(*leaves, is_first, mask)
    grads = torch.autograd.grad(out, leaves, gout.to(out))
    return [out.detach()] + [gr.detach() for gr in grads]


def check_agreement(device, impls):
    rows = []
    for structure, T, B, padded in AGREE_CASES:
        case = make_case(structure, T, B, padded)
        gout = torch.randn(B, sum(structure), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        ref = run_with_grads(rational_forward_ref, *case, gout)
        for impl in impls:
            for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
                moved = [
                    t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in case[:5]
                ] + [None if case[5] is None else case[5].to(device)]
                try:
                    got = run_with_grads(IMPLEMENTATIONS[impl], *moved, gout.to(device=device, dtype=dtype))
                    errs = [((a.double().cpu() - r).abs().max() / (1 + r.abs().max())).item() for a, r in zip(got, ref)]
                    err, status = max(errs), ("ok" if max(errs) <= tol else "MISMATCH")
                except Exception as exc:  # report, keep going
                    err, status = float("nan"), f"ERROR {type(exc).__name__}: {exc}"[:200]
                rows.append(
                    dict(
                        impl=impl,
                        dtype=str(dtype).replace("torch.", ""),
                        structure=list(structure),
                        T=T,
                        B=B,
                        padded=padded,
                        max_rel_err=err,
                        tol=tol,
                        status=status,
                    )
                )
                print(
                    f"agree {impl:<7} {rows[-1]['dtype']:<8} {str(structure):<20} T={T:<4} B={B:<3} "
                    f"pad={int(padded)}  err={err:.2e}  {status}",
                    flush=True,
                )
    return rows


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(run, device, min_repeats=5, max_repeats=30, budget_s=2.0):
    run()
    run()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        sync(device)
        t0 = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def make_problem(T, B, e, d, n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, e, generator=g)
    x = (x / x.norm(dim=-1, keepdim=True)).to(device)
    bound = math.sqrt(3.0 / e)
    N = d * n
    w = ((torch.rand(e, N, generator=g) * 2 - 1) * bound).to(device).requires_grad_()
    v = ((torch.rand(e, N, generator=g) * 2 - 1) * bound).to(device).requires_grad_()
    b = torch.zeros(N, device=device, requires_grad=True)
    is_first = torch.tensor([i == 0 for _ in range(d) for i in range(n)], device=device)
    clf = nn.Linear(d, 2).to(device)
    y = torch.randint(0, 2, (B,), generator=g).to(device)
    return x, w, v, b, is_first, clf, y


def make_step(impl, problem, d, n, backward=True):
    x, w, v, b, is_first, clf, y = problem
    T, B, e = x.shape
    params = [w, v, b, *clf.parameters()]

    def loss_of(states):
        return F.cross_entropy(clf(states.view(B, d, n).sum(-1)), y)

    if impl == "bound":

        def compute():
            proj = x.reshape(T * B, e) @ torch.cat([w, v], 1)
            f = torch.sigmoid(proj[:, d * n :] + b)
            u = proj[:, : d * n] * (1 - f)
            return loss_of(u.view(T, B, -1).sum(0))
    elif impl == "lstm24":
        lstm = nn.LSTM(e, d).to(x.device)
        params += list(lstm.parameters())

        def compute():
            _, (h, _) = lstm(x)
            return F.cross_entropy(clf(h[-1]), y)
    else:
        fn = IMPLEMENTATIONS[impl]

        def compute():
            return loss_of(fn(x, w, v, b, is_first, None))

    def run():
        for p in params:
            p.grad = None
        if backward:
            compute().backward()
        else:
            with torch.no_grad():
                compute()

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--B", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--T", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--e", type=int, default=300)
    ap.add_argument("--d", type=int, default=24)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per row")
    ap.add_argument("--reference-max-T", type=int, default=1024, help="skip the loop above this T")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, e.g. on CPU)")
    args = ap.parse_args(argv)
    if args.quick:
        args.B, args.T, args.budget = [4], [32, 64], 0.3

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"# device {name}, torch {torch.__version__}, impls {list(IMPLEMENTATIONS)}")
    t_start = time.perf_counter()
    impls = device_impls(device)
    agreement = check_agreement(device, impls)
    if "triton" in impls:  # a kernel that fails to compile is reported above, not timed
        from sparse_rational.ops.gpu import triton_available, triton_error

        if not triton_available(device):
            print(f"# triton unusable ({triton_error(device)}): no timing rows")
            impls = [i for i in impls if i != "triton"]

    results = []
    print(f"\n{'impl':<10}{'pass':<6}{'B':>5}{'T':>6}{'ms/step':>10}{'tokens/s':>14}")
    for B in args.B:
        for T in args.T:
            problem = make_problem(T, B, args.e, args.d, args.n, device)
            rows = [(i, True) for i in ["reference", *impls, "lstm24", "bound"]] + [(i, False) for i in impls]
            for impl, backward in rows:
                if impl == "reference" and T > args.reference_max_T:
                    continue
                try:
                    ms = time_it(make_step(impl, problem, args.d, args.n, backward), device, budget_s=args.budget)
                except Exception as exc:
                    print(f"{impl:<10} failed: {type(exc).__name__}: {exc}"[:200])
                    continue
                row = dict(
                    impl=impl,
                    passes="fwd+bwd" if backward else "fwd",
                    B=B,
                    T=T,
                    e=args.e,
                    d=args.d,
                    n=args.n,
                    ms_per_step=round(ms, 3),
                    tokens_per_s=round(B * T / (ms / 1e3)),
                )
                results.append(row)
                print(
                    f"{impl:<10}{'f+b' if backward else 'fwd':<6}{B:>5}{T:>6}{ms:>10.3f}{row['tokens_per_s']:>14,}",
                    flush=True,
                )
            del problem
            if device.type == "cuda":
                torch.cuda.empty_cache()

    bad = [r for r in agreement if r["status"] != "ok"]
    print(
        f"\n# agreement: {len(agreement) - len(bad)}/{len(agreement)} ok; total {time.perf_counter() - t_start:.0f} s"
    )
    if args.json:
        from sparse_rational.fileio import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "device": name,
                "torch": torch.__version__,
                "agreement": agreement,
                "results": results,
                "provenance": provenance(argv, device),
            },
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

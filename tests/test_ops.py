"""Every fast implementation of the recurrence agrees with the reference (see docs/DESIGN.md, 'Kernel contract'),
for every readout (final, mean, max: see ``sparse_rational/ops/reference.py``).

The scan path is always tested, also where the C++ kernel builds (it is the fallback).
GPU tests are marked ``gpu`` and skip without CUDA.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import sparse_rational.ops as ops
from sparse_rational.model import state_layout
from sparse_rational.ops import IMPLEMENTATIONS, READOUTS, ReadoutError, rational_forward, rational_forward_ref
from sparse_rational.ops.scan import CHUNK, LevelScan, LinearScan, state_levels

FAST = ["scan", "cpp"]
readouts = pytest.mark.parametrize("readout", READOUTS)
CUDA = torch.cuda.is_available()


def _impl(name: str):
    if name == "cpp" and not ops.cpp_available():
        pytest.skip(f"C++ kernel did not build: {ops.build_error()}")
    return IMPLEMENTATIONS[name]


def is_first_of(structure) -> torch.Tensor:
    return state_layout(tuple(structure))[0]


def make_inputs(structure, T, B, e=5, dtype=torch.float64, seed=0, pad=False, device="cpu", scale=1.0):
    g = torch.Generator().manual_seed(seed)
    N = sum(structure)
    x = torch.randn(T, B, e, generator=g, dtype=dtype)
    w = torch.randn(e, N, generator=g, dtype=dtype) * scale
    v = torch.randn(e, N, generator=g, dtype=dtype) * scale
    b = torch.randn(N, generator=g, dtype=dtype)
    mask = None
    if pad:  # right padding: document i has length T - (i % T), at least 1
        lengths = torch.tensor([max(1, T - (i % T)) for i in range(B)])
        mask = torch.arange(T)[:, None] < lengths[None, :]
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return [move(t) for t in (x, w, v, b)] + [is_first_of(structure).to(device), move(mask)]


def forward_and_grads(fn, x, w, v, b, is_first, mask, seed=1, readout="final"):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, v, b)]
    out = fn(*leaves, is_first, mask, readout=readout)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    grads = torch.autograd.grad(out, leaves, g)
    return out.detach(), [gr.detach() for gr in grads]


def assert_agree(fn, inputs, atol=1e-10, rtol=1e-9, readout="final"):
    cpu = [t.cpu() if t is not None else None for t in inputs]
    ref_out, ref_grads = forward_and_grads(rational_forward_ref, *cpu, readout=readout)
    out, grads = forward_and_grads(fn, *inputs, readout=readout)
    torch.testing.assert_close(out.cpu(), ref_out, atol=atol, rtol=rtol)
    for name, a, r in zip("xwvb", grads, ref_grads):
        torch.testing.assert_close(a.cpu(), r, atol=atol, rtol=rtol, msg=lambda m, name=name: f"grad {name}: {m}")


STRUCTURES = [(4, 4, 2, 1), (1, 3), (1,), (2, 5, 1, 3), (3,) * 6]


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("structure", STRUCTURES, ids=str)
@pytest.mark.parametrize("T,B", [(1, 1), (1, 4), (7, 1), (13, 5), (67, 3)])
@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@readouts
def test_agrees_with_reference_float64(impl, structure, T, B, pad, readout):
    fn = _impl(impl)
    assert_agree(fn, make_inputs(structure, T, B, pad=pad, seed=T * 31 + B), readout=readout)


@pytest.mark.parametrize("impl", FAST)
@readouts
def test_agrees_float32(impl, readout):
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 50, 6, e=16, pad=True, dtype=torch.float32, scale=0.3)
    assert_agree(fn, (x, w, v, b, is_first, mask), atol=2e-5, rtol=2e-4, readout=readout)


@pytest.mark.parametrize("impl", ["reference", *FAST])
@pytest.mark.parametrize("structure", [(2, 1), (1, 3)], ids=str)
@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@readouts
def test_gradcheck(impl, structure, pad, readout):
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs(structure, 4, 3, e=3, pad=pad, seed=7)
    leaves = [t.requires_grad_() for t in (x, w, v, b)]
    assert torch.autograd.gradcheck(lambda x, w, v, b: fn(x, w, v, b, is_first, mask, readout=readout), leaves)


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("readout", ["final", "mean"])
def test_saturated_sigmoid(impl, readout):
    """Huge projections (f = 0 or 1 to machine precision) stay finite and agree. (Not max:
    saturated states are constant over many steps up to rounding, and which of those
    near-ties is the argmax depends on the last bit of each implementation's sigmoid.)"""
    fn = _impl(impl)
    inputs = make_inputs((3, 2), 9, 4, scale=80.0, seed=3)
    assert_agree(fn, inputs, atol=1e-7, rtol=1e-7, readout=readout)


@pytest.mark.parametrize("impl", ["reference", *FAST])
@readouts
def test_padding_equals_unbatched(impl, readout):
    """A right-padded batch gives each document the readout of the document alone."""
    fn = _impl(impl)
    structure = (4, 2, 1)
    x, w, v, b, is_first, _ = make_inputs(structure, 11, 4, e=6)
    lengths = [11, 3, 1, 7]
    mask = torch.arange(11)[:, None] < torch.tensor(lengths)[None, :]
    x[~mask] = 1e3  # what the padding holds does not matter
    batched = fn(x, w, v, b, is_first, mask, readout=readout)
    for i, n in enumerate(lengths):
        alone = fn(x[:n, i : i + 1], w, v, b, is_first, None, readout=readout)
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("impl", FAST)
@readouts
def test_batch_first_storage(impl, readout):
    """``x`` and ``mask`` as transposed views of batch-first tensors (what the model passes)."""
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 9, 5, pad=True)
    xb, mb = x.transpose(0, 1).contiguous(), mask.t().contiguous()
    assert_agree(fn, (xb.transpose(0, 1), w, v, b, is_first, mb.t()), readout=readout)


@pytest.mark.parametrize("impl", ["reference", *FAST])
@readouts
def test_empty_document_and_no_grad(impl, readout):
    """A document without real tokens reads 0 in every readout."""
    fn = _impl(impl)
    x, w, v, b, is_first, _ = make_inputs((2, 2), 5, 2)
    mask = torch.zeros(5, 2, dtype=torch.bool)
    mask[:, 1] = True
    with torch.no_grad():
        out = fn(x, w, v, b, is_first, mask, readout=readout)
    assert torch.all(out[0] == 0)
    torch.testing.assert_close(out, rational_forward_ref(x, w, v, b, is_first, mask, readout=readout))
    assert_agree(fn, (x, w, v, b, is_first, mask), readout=readout)


@pytest.mark.parametrize("impl", ["reference", *FAST])
@readouts
def test_zero_group_is_zero_and_pruning_preserves_the_function(impl, readout):
    """A zero group (w_s = v_s = 0, b_s = 0) keeps c_s = 0 at every step, so its readout is
    exactly 0 (also its successors', which only see c_s); the pruned structure (the longest
    prefix of each WFSA without a zero group) gives the other states the same readout. For
    max, the all-zero states are ties at every step: the gradient goes to the first real
    step, in every implementation."""
    fn = _impl(impl)
    structure, kept_structure = (3, 2, 2, 1), (1, 2, 1)
    x, w, v, b, is_first, mask = make_inputs(structure, 12, 4, pad=True, seed=5)
    zero = [1, 6, 7]  # q_2 of WFSA 0 (q_3 follows it out), q_2 of WFSA 2, all of WFSA 3
    removed = [1, 2, 6, 7]
    kept = [s for s in range(sum(structure)) if s not in removed]
    w[:, zero], v[:, zero], b[zero] = 0.0, 0.0, 0.0
    out = fn(x, w, v, b, is_first, mask, readout=readout)
    assert torch.all(out[:, removed] == 0)
    assert torch.all(out[:, kept] != 0)
    pruned = fn(x, w[:, kept], v[:, kept], b[kept], is_first_of(kept_structure), mask, readout=readout)
    torch.testing.assert_close(out[:, kept], pruned, atol=1e-12, rtol=1e-12)
    assert_agree(fn, (x, w, v, b, is_first, mask), readout=readout)


@pytest.mark.parametrize("impl", ["reference", *FAST])
def test_readout_equations(impl):
    """The three readouts of one document from its states c(1..T), computed here by hand."""
    fn = _impl(impl)
    x, w, v, b, is_first, _ = make_inputs((3, 2), 9, 1, seed=11)
    mask = torch.arange(9)[:, None] < 6  # 6 real tokens, 3 pads
    states = torch.stack([rational_forward_ref(x[: t + 1], w, v, b, is_first) for t in range(6)])  # [6, 1, N]
    torch.testing.assert_close(fn(x, w, v, b, is_first, mask), states[-1])
    torch.testing.assert_close(fn(x, w, v, b, is_first, mask, readout="mean"), states.mean(0))
    torch.testing.assert_close(fn(x, w, v, b, is_first, mask, readout="max"), states.amax(0))


@pytest.mark.parametrize("impl", ["reference", *FAST])
def test_unknown_readout(impl):
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs((2, 1), 3, 2)
    for bad in ("sum", "Mean", 1, None):
        with pytest.raises(ReadoutError, match="unknown readout"):
            fn(x, w, v, b, is_first, mask, readout=bad)


def test_level_layout():
    perm, inverse, sizes = state_levels(is_first_of((1, 3, 2)))
    # WFSAs sorted longest first: (3 @ 1), (2 @ 4), (1 @ 0); level k = their k-th states
    assert perm == [1, 4, 0, 2, 5, 3] and sizes == [3, 2, 1]
    assert [perm[i] for i in inverse] == list(range(6))


def test_linear_scan_gradcheck():
    g = torch.Generator().manual_seed(0)
    A = torch.rand(9, 2, 3, generator=g, dtype=torch.float64).requires_grad_()
    X = torch.randn(9, 2, 3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(LinearScan.apply, (A, X))
    H, h = LinearScan.apply(A, X), torch.zeros(2, 3, dtype=torch.float64)
    for t in range(9):
        h = A[t] * h + X[t]
        torch.testing.assert_close(H[t], h)


@pytest.mark.parametrize("T", [5, 2 * CHUNK + 3])  # one Hillis-Steele block / chunked
def test_level_scan_gradcheck(T):
    g = torch.Generator().manual_seed(1)
    f = torch.rand(T, 2, 2, generator=g, dtype=torch.float64).requires_grad_()
    u = torch.randn(T, 2, 2, generator=g, dtype=torch.float64).requires_grad_()
    H_prev = torch.randn(T, 2, 3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(LevelScan.apply, (f, u, H_prev))
    assert torch.autograd.gradcheck(lambda f, u: LevelScan.apply(f, u, None), (f, u))


# --- the C++ operator ------------------------------------------------------------------


@readouts
def test_cpp_opcheck(readout):
    _impl("cpp")
    from sparse_rational.ops.cpu import wfsa_recurrence

    g = torch.Generator().manual_seed(0)
    T, B, N = 5, 3, 6
    proj = torch.randn(T, B, 2 * N, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(N, generator=g, dtype=torch.float64, requires_grad=True)
    is_first = is_first_of((3, 2, 1))
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[3:, 0] = False
    mask[:, 2] = False  # an empty document
    torch.library.opcheck(wfsa_recurrence, (proj, bias, is_first, mask, True, readout))
    torch.library.opcheck(wfsa_recurrence, (proj, bias, is_first, None, False, readout))


def test_cpp_max_argmax_steps():
    """The max readout's third output: the first step reaching each maximum, -1 for an
    empty document."""
    _impl("cpp")
    from sparse_rational.ops.cpu import wfsa_recurrence

    x, w, v, b, is_first, _ = make_inputs((3, 2), 8, 3, seed=2)
    mask = torch.arange(8)[:, None] < torch.tensor([8, 5, 0])
    proj = (x.reshape(-1, x.shape[-1]) @ torch.cat([w, v], 1)).view(8, 3, -1)
    y, _, arg = wfsa_recurrence(proj, b, is_first, mask, False, "max")
    states = torch.stack([rational_forward_ref(x[: t + 1], w, v, b, is_first) for t in range(8)])  # [T, B, N]
    states[~mask] = float("-inf")
    assert arg.dtype == torch.int32
    assert torch.equal(arg[:2], states.argmax(0)[:2].int()) and torch.all(arg[2] == -1)
    torch.testing.assert_close(y[:2], states.amax(0)[:2])


@pytest.mark.parametrize("readout", ["final", "max"])  # max: the op's extra argmax output
def test_cpp_under_torch_compile(readout):
    """The op composes with torch.compile (fake impl + registered autograd, no graph break)."""
    fn = _impl("cpp")
    x, w, v, b, is_first, mask = make_inputs((3, 1, 2), 6, 3, pad=True)
    w.requires_grad_()
    b.requires_grad_()
    compiled = torch.compile(
        lambda x, w, v, b, m: fn(x, w, v, b, is_first, m, readout=readout).sum(), backend="aot_eager", fullgraph=True
    )
    compiled(x, w, v, b, mask).backward()
    gw, gb = w.grad, b.grad
    w2, b2 = w.detach().requires_grad_(), b.detach().requires_grad_()
    rational_forward_ref(x, w2, v, b2, is_first, mask, readout=readout).sum().backward()
    torch.testing.assert_close(gw, w2.grad)
    torch.testing.assert_close(gb, b2.grad)


@readouts
def test_cpp_deterministic_across_thread_counts(readout):
    fn = _impl("cpp")
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 20, 9, e=8, pad=True, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(forward_and_grads(fn, x, w, v, b, is_first, mask, readout=readout))
    finally:
        torch.set_num_threads(before)
    (o1, g1), (o2, g2) = results
    assert torch.equal(o1, o2) and all(torch.equal(a, c) for a, c in zip(g1, g2))


@readouts
def test_long_sequence_gradients_flush_tiny_values(readout):
    """Gradients that decay below ~1e-22 (float32) are flushed to zero, nothing else changes."""
    fn = _impl("cpp")
    x, w, v, b, is_first, _ = make_inputs((2, 2), 400, 2, e=8, dtype=torch.float32, scale=0.2)
    x64 = [t.double() for t in (x, w, v, b)]
    out, grads = forward_and_grads(fn, x, w, v, b, is_first, None, readout=readout)
    ref_out, ref_grads = forward_and_grads(rational_forward_ref, *x64, is_first, None, readout=readout)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-4, rtol=1e-4)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), r, atol=1e-4, rtol=1e-3)


# --- choosing an implementation --------------------------------------------------------


def test_auto_and_env_var(monkeypatch):
    x, w, v, b, is_first, mask = make_inputs((2, 1), 3, 2)
    expected = "cpp" if ops.cpp_available() else "scan"
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    assert ops.choose_impl(x) == expected
    for name in ("scan", "reference"):
        monkeypatch.setenv(ops.ENV_VAR, name)
        assert ops.choose_impl(x) == name
        torch.testing.assert_close(
            rational_forward(x, w, v, b, is_first, mask), rational_forward_ref(x, w, v, b, is_first, mask)
        )
    monkeypatch.delenv(ops.ENV_VAR)
    for readout in READOUTS:
        torch.testing.assert_close(
            rational_forward(x, w, v, b, is_first, mask, readout=readout),
            rational_forward_ref(x, w, v, b, is_first, mask, readout=readout),
        )
    with pytest.raises(ValueError, match="unknown readout"):
        rational_forward(x, w, v, b, is_first, mask, readout="last")
    monkeypatch.setenv(ops.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="SPARSE_RATIONAL_IMPL"):
        rational_forward(x, w, v, b, is_first, mask)
    with pytest.raises(ValueError, match="unknown impl"):
        rational_forward(x, w, v, b, is_first, mask, impl="nonsense")


def test_fallback_warns_once_when_build_fails(monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    monkeypatch.setattr(ops, "cpp_available", lambda: False)
    monkeypatch.setattr(ops, "build_error", lambda: "CalledProcessError: no compiler")
    monkeypatch.setattr(ops, "_warned", False)
    x, w, v, b, is_first, mask = make_inputs((2, 1), 3, 2)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        out = rational_forward(x, w, v, b, is_first, mask)
    torch.testing.assert_close(out, rational_forward_ref(x, w, v, b, is_first, mask))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rational_forward(x, w, v, b, is_first, mask)


def test_import_compiles_nothing():
    code = (
        "import sparse_rational, sparse_rational.ops, sparse_rational.ops.cpu as c;"
        "assert not c._state['loaded'] and c._state['error'] is None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- GPU -------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("structure", [(4, 4, 2, 1), (1, 3)], ids=str)
@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@readouts
def test_scan_on_cuda(structure, pad, readout):
    assert_agree(IMPLEMENTATIONS["scan"], make_inputs(structure, 33, 4, pad=pad, device="cuda"), readout=readout)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_auto_on_cuda_is_triton_where_it_works_else_scan(monkeypatch):
    """float32/float64 on CUDA: the Triton kernel where it is registered (triton installed) and
    works on the device, else the scan; any other dtype: the scan."""
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    x = torch.zeros(2, 2, 3, device="cuda")
    expected = "triton" if "triton" in IMPLEMENTATIONS and ops.triton_available(x.device) else "scan"
    assert ops.choose_impl(x) == expected
    assert ops.choose_impl(x.double()) == expected
    assert ops.choose_impl(x.half()) == "scan"
    assert ops.choose_impl(x.bfloat16()) == "scan"
    monkeypatch.setattr(ops, "triton_available", lambda device="cuda": False)  # a device Triton cannot use
    assert ops.choose_impl(x) == "scan"

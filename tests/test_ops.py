"""Every fast implementation of the recurrence agrees with the reference (see docs/DESIGN.md, 'Kernel contract').

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
from sparse_rational.ops import IMPLEMENTATIONS, rational_forward, rational_forward_ref
from sparse_rational.ops.scan import CHUNK, LevelScan, LinearScan, state_levels

FAST = ["scan", "cpp"]
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


def forward_and_grads(fn, x, w, v, b, is_first, mask, seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, v, b)]
    out = fn(*leaves, is_first, mask)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    grads = torch.autograd.grad(out, leaves, g)
    return out.detach(), [gr.detach() for gr in grads]


def assert_agree(fn, inputs, atol=1e-10, rtol=1e-9):
    ref_out, ref_grads = forward_and_grads(rational_forward_ref, *[t.cpu() if t is not None else None for t in inputs])
    out, grads = forward_and_grads(fn, *inputs)
    torch.testing.assert_close(out.cpu(), ref_out, atol=atol, rtol=rtol)
    for name, a, r in zip("xwvb", grads, ref_grads):
        torch.testing.assert_close(a.cpu(), r, atol=atol, rtol=rtol, msg=lambda m: f"grad {name}: {m}")


STRUCTURES = [(4, 4, 2, 1), (1, 3), (1,), (2, 5, 1, 3), (3,) * 6]


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("structure", STRUCTURES, ids=str)
@pytest.mark.parametrize("T,B", [(1, 1), (1, 4), (7, 1), (13, 5), (67, 3)])
@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
def test_agrees_with_reference_float64(impl, structure, T, B, pad):
    fn = _impl(impl)
    assert_agree(fn, make_inputs(structure, T, B, pad=pad, seed=T * 31 + B))


@pytest.mark.parametrize("impl", FAST)
def test_agrees_float32(impl):
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 50, 6, e=16, pad=True, dtype=torch.float32, scale=0.3)
    assert_agree(fn, (x, w, v, b, is_first, mask), atol=2e-5, rtol=2e-4)


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("structure", [(2, 1), (1, 3)], ids=str)
@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
def test_gradcheck(impl, structure, pad):
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs(structure, 4, 3, e=3, pad=pad, seed=7)
    leaves = [t.requires_grad_() for t in (x, w, v, b)]
    assert torch.autograd.gradcheck(lambda x, w, v, b: fn(x, w, v, b, is_first, mask), leaves)


@pytest.mark.parametrize("impl", FAST)
def test_saturated_sigmoid(impl):
    """Huge projections (f = 0 or 1 to machine precision) stay finite and agree."""
    fn = _impl(impl)
    inputs = make_inputs((3, 2), 9, 4, scale=80.0, seed=3)
    assert_agree(fn, inputs, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("impl", FAST)
def test_padding_equals_unbatched(impl):
    """A right-padded batch gives each document the states of the document alone."""
    fn = _impl(impl)
    structure = (4, 2, 1)
    x, w, v, b, is_first, _ = make_inputs(structure, 11, 4, e=6)
    lengths = [11, 3, 1, 7]
    mask = torch.arange(11)[:, None] < torch.tensor(lengths)[None, :]
    batched = fn(x, w, v, b, is_first, mask)
    for i, n in enumerate(lengths):
        alone = fn(x[:n, i : i + 1], w, v, b, is_first, None)
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("impl", FAST)
def test_batch_first_storage(impl):
    """``x`` and ``mask`` as transposed views of batch-first tensors (what the model passes)."""
    fn = _impl(impl)
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 9, 5, pad=True)
    xb, mb = x.transpose(0, 1).contiguous(), mask.t().contiguous()
    assert_agree(fn, (xb.transpose(0, 1), w, v, b, is_first, mb.t()))


@pytest.mark.parametrize("impl", FAST)
def test_empty_document_and_no_grad(impl):
    fn = _impl(impl)
    x, w, v, b, is_first, _ = make_inputs((2, 2), 5, 2)
    mask = torch.zeros(5, 2, dtype=torch.bool)
    mask[:, 1] = True
    with torch.no_grad():
        out = fn(x, w, v, b, is_first, mask)
    assert torch.all(out[0] == 0)
    torch.testing.assert_close(out, rational_forward_ref(x, w, v, b, is_first, mask))


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


def test_cpp_opcheck():
    _impl("cpp")
    from sparse_rational.ops.cpu import wfsa_recurrence

    g = torch.Generator().manual_seed(0)
    T, B, N = 5, 3, 6
    proj = torch.randn(T, B, 2 * N, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(N, generator=g, dtype=torch.float64, requires_grad=True)
    is_first = is_first_of((3, 2, 1))
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[3:, 0] = False
    torch.library.opcheck(wfsa_recurrence, (proj, bias, is_first, mask, True))
    torch.library.opcheck(wfsa_recurrence, (proj, bias, is_first, None, False))


def test_cpp_under_torch_compile():
    """The op composes with torch.compile (fake impl + registered autograd, no graph break)."""
    fn = _impl("cpp")
    x, w, v, b, is_first, mask = make_inputs((3, 1, 2), 6, 3, pad=True)
    w.requires_grad_()
    b.requires_grad_()
    compiled = torch.compile(lambda x, w, v, b, m: fn(x, w, v, b, is_first, m).sum(), backend="aot_eager", fullgraph=True)
    compiled(x, w, v, b, mask).backward()
    gw, gb = w.grad, b.grad
    w2, b2 = w.detach().requires_grad_(), b.detach().requires_grad_()
    rational_forward_ref(x, w2, v, b2, is_first, mask).sum().backward()
    torch.testing.assert_close(gw, w2.grad)
    torch.testing.assert_close(gb, b2.grad)


def test_cpp_deterministic_across_thread_counts():
    fn = _impl("cpp")
    x, w, v, b, is_first, mask = make_inputs((4, 4, 2, 1), 20, 9, e=8, pad=True, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(forward_and_grads(fn, x, w, v, b, is_first, mask))
    finally:
        torch.set_num_threads(before)
    (o1, g1), (o2, g2) = results
    assert torch.equal(o1, o2) and all(torch.equal(a, c) for a, c in zip(g1, g2))


def test_long_sequence_gradients_flush_tiny_values():
    """Gradients that decay below ~1e-22 (float32) are flushed to zero, nothing else changes."""
    fn = _impl("cpp")
    x, w, v, b, is_first, _ = make_inputs((2, 2), 400, 2, e=8, dtype=torch.float32, scale=0.2)
    x64 = [t.double() for t in (x, w, v, b)]
    out, grads = forward_and_grads(fn, x, w, v, b, is_first, None)
    ref_out, ref_grads = forward_and_grads(rational_forward_ref, *x64, is_first, None)
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
        torch.testing.assert_close(rational_forward(x, w, v, b, is_first, mask), rational_forward_ref(x, w, v, b, is_first, mask))
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
def test_scan_on_cuda(structure, pad):
    assert_agree(IMPLEMENTATIONS["scan"], make_inputs(structure, 33, 4, pad=pad, device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_auto_on_cuda_is_scan():
    x = torch.zeros(2, 2, 3, device="cuda")
    assert ops.choose_impl(x) in ("scan", "triton")

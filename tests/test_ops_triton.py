"""The Triton kernel (:mod:`sparse_rational.ops.gpu`) against the reference, for every readout.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, CPU
tensors); these tests are skipped when ``triton`` is not installed. The ``gpu`` variants run
the compiled kernels on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from sparse_rational.model import state_layout
from sparse_rational.ops import IMPLEMENTATIONS, READOUTS, choose_impl, rational_forward_ref
from sparse_rational.ops.gpu import triton_importable
from sparse_rational.ops.scan import rational_forward_scan

needs_triton = pytest.mark.skipif(not triton_importable(), reason="triton is not installed")
readouts = pytest.mark.parametrize("readout", READOUTS)

CASES = [
    # structure, T, B, padded
    ((4, 4, 2, 1), 13, 3, True),
    ((1, 3), 19, 2, False),
    ((3,) * 6, 10, 3, True),
    ((4, 4, 2, 1), 1, 4, False),  # T = 1
    ((2, 5, 1), 9, 1, True),  # B = 1, a WFSA longer than 4
    ((1,), 5, 2, True),  # one state
    ((2,) * 33 + (1,), 5, 2, True),  # 34 WFSAs: two blocks of WFSAs per batch element
    ((16, 1), 6, 2, True),  # a long WFSA (16 levels)
]


def make_case(structure, T, B, padded, dtype, device="cpu", e=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = sum(structure)
    x = torch.randn(T, B, e, generator=g, dtype=torch.float64)
    w = torch.randn(e, N, generator=g, dtype=torch.float64) * 0.7
    v = torch.randn(e, N, generator=g, dtype=torch.float64) * 0.7
    b = torch.randn(N, generator=g, dtype=torch.float64)
    is_first = state_layout(tuple(structure))[0]
    mask = None
    if padded:  # right padding, one document per length
        lengths = torch.tensor([max(1, T - 3 * i) for i in range(B)])
        mask = (torch.arange(T)[:, None] < lengths[None, :]).to(device)
    gout = torch.randn(B, N, generator=g, dtype=torch.float64)
    floats = [t.to(device=device, dtype=dtype) for t in (x, w, v, b, gout)]
    return floats[:4], is_first.to(device), mask, floats[4]


def outputs_and_grads(fn, leaves, is_first, mask, gout, readout="final"):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves, is_first, mask, readout=readout)
    return [out.detach()] + [g.detach() for g in torch.autograd.grad(out, leaves, gout)]


def assert_agrees(got, want, tol):
    names = ["y", "dx", "dw", "dv", "db"]
    for name, a, r in zip(names, got, want):
        r = r.to(device=a.device, dtype=a.dtype)
        err = ((a - r).abs().max() / (1 + r.abs().max())).item()
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


@pytest.fixture
def interpreted(monkeypatch):
    """The kernel function, run by Triton's interpreter on CPU tensors."""
    if not triton_importable():
        pytest.skip("triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from sparse_rational.ops.gpu.triton_wfsa import rational_forward_triton

    return rational_forward_triton


@needs_triton
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-B{c[2]}-pad{int(c[3])}")
@readouts
def test_interpreted_matches_reference(interpreted, case, dtype, tol, readout):
    leaves, is_first, mask, gout = make_case(*case, dtype=dtype)
    want = outputs_and_grads(rational_forward_ref, [t.double() for t in leaves], is_first, mask, gout.double(), readout)
    got = outputs_and_grads(interpreted, leaves, is_first, mask, gout, readout)
    assert got[0].dtype == dtype
    assert_agrees(got, want, tol)


@needs_triton
@readouts
def test_interpreted_empty_document_and_zero_group(interpreted, readout):
    """A document without real tokens reads 0; a zero group's state (and its successor's)
    is 0 at every step, so it reads exactly 0, and for max its gradient goes to the first
    real step of those ties, as in the reference."""
    leaves, is_first, _, gout = make_case((3, 2), 6, 3, False, torch.float64, seed=4)
    x, w, v, b = leaves
    w[:, 1], v[:, 1], b[1] = 0.0, 0.0, 0.0  # q_2 of WFSA 0; its q_3 only sees it
    mask = torch.arange(6)[:, None] < torch.tensor([6, 2, 0])
    want = outputs_and_grads(rational_forward_ref, leaves, is_first, mask, gout, readout)
    got = outputs_and_grads(interpreted, leaves, is_first, mask, gout, readout)
    assert torch.all(got[0][:, 1:3] == 0) and torch.all(got[0][2] == 0)
    assert_agrees(got, want, 1e-12)


@needs_triton
@readouts
def test_interpreted_inference_and_recompute(interpreted, readout):
    """Forward without history (no_grad); a backward without a saved history recomputes it."""
    from sparse_rational.ops.gpu.triton_wfsa import TritonRecurrence, _level_tables

    leaves, is_first, mask, gout = make_case((3, 1, 2), 11, 3, True, torch.float64)
    with torch.no_grad():
        got = interpreted(*leaves, is_first, mask, readout=readout)
    want = rational_forward_ref(*leaves, is_first, mask, readout=readout)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    x, w, v, b = leaves
    perm, _, offsets, sizes, L, d = _level_tables(tuple(is_first.tolist()), "cpu")
    proj = (x.reshape(-1, x.shape[-1]) @ torch.cat([w[:, perm], v[:, perm]], 1)).view(*x.shape[:2], -1)
    proj.requires_grad_()
    bias = b[perm].clone().requires_grad_()
    m = mask.to(torch.uint8)
    grads = []
    for save in (True, False):
        out = TritonRecurrence.apply(proj, bias, m, offsets, sizes, L, d, save, readout)
        grads.append(torch.autograd.grad(out, (proj, bias), gout[:, perm]))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, rtol=0, atol=0)


@needs_triton
@readouts
def test_interpreted_batch_first_input(interpreted, readout):
    """A non-contiguous ``[T, B, e]`` view of batch-first vectors gives the same result."""
    leaves, is_first, mask, gout = make_case((4, 2), 7, 3, True, torch.float64)
    x = leaves[0].transpose(0, 1).contiguous().transpose(0, 1)
    assert not x.is_contiguous()
    want = outputs_and_grads(rational_forward_ref, leaves, is_first, mask, gout, readout)
    got = outputs_and_grads(interpreted, [x, *leaves[1:]], is_first, mask, gout, readout)
    assert_agrees(got, want, 1e-12)


@needs_triton
def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from sparse_rational.ops.gpu.triton_wfsa import rational_forward_triton

    leaves, is_first, mask, _ = make_case((2,), 3, 2, False, torch.float32)
    with pytest.raises(RuntimeError, match="CUDA"):
        rational_forward_triton(*leaves, is_first, mask)


def test_registered_only_with_cuda():
    assert ("triton" in IMPLEMENTATIONS) == (triton_importable() and torch.cuda.is_available())
    if not torch.cuda.is_available():
        assert choose_impl(torch.zeros(1)) != "triton"


# --- the compiled kernels on CUDA ---------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@needs_triton
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-B{c[2]}-pad{int(c[3])}")
@readouts
def test_cuda_matches_reference(case, dtype, tol, readout):
    from sparse_rational.ops.gpu import rational_forward_triton

    leaves, is_first, mask, gout = make_case(*case, dtype=dtype)
    want = outputs_and_grads(rational_forward_ref, [t.double() for t in leaves], is_first, mask, gout.double(), readout)
    dev = [t.cuda() for t in leaves]
    got = outputs_and_grads(
        rational_forward_triton, dev, is_first.cuda(), None if mask is None else mask.cuda(), gout.cuda(), readout
    )
    assert_agrees(got, want, tol)


@pytest.mark.gpu
@cuda
@needs_triton
@readouts
def test_cuda_long_sequences_match_scan(readout):
    """24 WFSAs of length 4, T = 700 (several unrolled chunks plus a ragged end), B = 33."""
    from sparse_rational.ops.gpu import rational_forward_triton, triton_available

    assert triton_available("cuda")
    assert choose_impl(torch.zeros(1, device="cuda")) == "triton"
    leaves, is_first, mask, gout = make_case((4,) * 24, 700, 33, True, torch.float64, device="cuda", e=16)
    want = outputs_and_grads(rational_forward_scan, leaves, is_first, mask, gout, readout)
    got = outputs_and_grads(rational_forward_triton, leaves, is_first, mask, gout, readout)
    assert_agrees(got, want, 1e-10)

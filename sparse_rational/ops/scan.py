"""Pure-PyTorch fast path: a parallel (Hillis-Steele) scan over time, one state level at a time.

Same signature as :func:`sparse_rational.ops.reference.rational_forward_ref`; runs on any
device (CPU and CUDA), float32 and float64.

For every state the recurrence is linear in time (see docs/DESIGN.md, 'The model')::

    c_s(t) = f_s(t) c_s(t-1) + X_s(t),    X_s(t) = u_s(t) p_s(t-1),

with ``p_s = 1`` for the states q_1 and ``p_s = c_{s-1}`` otherwise. Level ``k`` (the
states q_{k+1} of all WFSAs long enough to have one) therefore only needs the whole
history of level ``k - 1``: levels are solved one after another (as many as the longest
WFSA), each with an associative scan over time of the pairs ``(f, X)`` under
``(A2, X2) o (A1, X1) = (A2 A1, A2 X1 + X2)`` -- ``ceil(log2 T)`` elementwise steps on
``[T, B, m_k]`` tensors, where ``m_k`` is the number of WFSAs of length > k. The total work
is proportional to the number of transitions, whatever the mix of lengths.

The states are permuted once (the columns of ``w``, ``v``, ``b``) so that the matmul writes
each level as one contiguous block and the predecessors of level ``k`` are a prefix of
level ``k - 1`` (WFSAs sorted by decreasing length); the result is permuted back.

The scan has a custom backward (:class:`LinearScan`): the adjoint of a linear recurrence is
the same recurrence run backwards in time, ``lam(t) = g(t) + A(t+1) lam(t+1)``, so the
backward is one more scan and nothing of the ``log T`` forward steps is stored.

**Readouts** (:mod:`.reference` defines them). Every level's whole history ``H [T, B, m]``
is there anyway; :func:`read_out` takes ``final`` as ``H(T-1)`` (padding carries the
states), ``mean`` as ``sum_t r_b(t) H(t)`` with ``r_b(t) = [t real] / L_b`` (one batched
matmul) and ``max`` as ``H`` gathered at the first argmax over the real steps. Their
gradients reach the adjoint scan as its per-step input ``g(t) = dL/dH(t)``: ``grad`` at the
last step (final), ``r_b(t) grad`` at every real step (mean), ``grad`` at the argmax step
(max).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..layout import StateLayout
from .reference import FINAL, MEAN, readout_code, wfsa_sums


def _hillis_steele(A: Tensor, X: Tensor, products: bool = False, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """All ``h(t) = A(t) h(t-1) + X(t)`` (``h(-1) = 0``) along dim 0 in ``ceil(log2 T)`` steps;
    with ``reverse``, ``h(t) = A(t) h(t+1) + X(t)`` (``h(T) = 0``).

    Returns ``(h, P)``; with ``products``, ``P(t)`` is the product of ``A`` from the start
    (the end, with ``reverse``) to ``t``; otherwise ``P`` is garbage."""
    T = A.shape[0]
    X = X.clone()
    A = A.clone()
    d = 1
    while d < T:
        # the right-hand products are formed before the in-place updates
        if reverse:
            X[:-d] += A[:-d] * X[d:]
            if products or 2 * d < T:
                A[:-d] = A[:-d] * A[d:]
        else:
            X[d:] += A[d:] * X[:-d]
            if products or 2 * d < T:
                A[d:] = A[d:] * A[:-d]
        d *= 2
    return X, A


CHUNK = 16


def _scan(A: Tensor, X: Tensor, reverse: bool = False) -> Tensor:
    """``h(t) = A(t) h(t-1) + X(t)`` along dim 0 (``reverse``: ``h(t) = A(t) h(t+1) + X(t)``),
    blocked: a Hillis-Steele scan inside chunks of ``CHUNK`` steps (all chunks at once), a
    scan of the chunk carries, one fix-up pass: about ``log2(CHUNK) + 2`` passes over the
    data instead of ``log2(T)``, and products of ``A`` on the big tensors span one chunk
    only (no underflow to slow denormals)."""
    T = A.shape[0]
    if T <= 2 * CHUNK:
        return _hillis_steele(A, X, reverse=reverse)[0]
    C = -(-T // CHUNK)
    pad = C * CHUNK - T
    if pad:  # identity steps at the end: A = 1, X = 0 (harmless in both directions)
        A = torch.cat([A, A.new_ones((pad,) + A.shape[1:])])
        X = torch.cat([X, X.new_zeros((pad,) + X.shape[1:])])
    rest = A.shape[1:]
    Ac = A.reshape(C, CHUNK, *rest).transpose(0, 1)  # [CHUNK, C, ...]: scan along dim 0
    Xc = X.reshape(C, CHUNK, *rest).transpose(0, 1)
    H, P = _hillis_steele(Ac, Xc, products=True, reverse=reverse)
    if reverse:  # carry[c]: the state at the start of chunk c, fed into chunk c - 1
        carry = _hillis_steele(P[0], H[0], reverse=True)[0]
        H[:, :-1] += P[:, :-1] * carry[1:]
    else:  # carry[c]: the state at the end of chunk c, fed into chunk c + 1
        carry = _hillis_steele(P[-1], H[-1])[0]
        H[:, 1:] += P[:, 1:] * carry[:-1]
    return H.transpose(0, 1).reshape(C * CHUNK, *rest)[:T]


def _adjoint(A: Tensor, gH: Tensor) -> Tensor:
    """``lam(t) = gH(t) + A(t+1) lam(t+1)``: the adjoint of ``H(t) = A(t) H(t-1) + X(t)``."""
    A_next = torch.cat([A[1:], A.new_zeros((1,) + A.shape[1:])])
    lam = _scan(A_next, gH, reverse=True)
    if lam.device.type == "cpu":  # decayed adjoints: zero, not denormal (see _FlushTinyGrad)
        lam = _flush_tiny(lam)
    return lam


def _delay(H: Tensor) -> Tensor:
    """``H(t-1)`` with ``H(-1) = 0``."""
    return torch.cat([H.new_zeros((1,) + H.shape[1:]), H[:-1]])


class LinearScan(torch.autograd.Function):
    """``H = LinearScan.apply(A, X)``: ``H(t) = A(t) H(t-1) + X(t)``, ``H(-1) = 0``, over dim 0.

    ``A, X``: ``[T, ...]`` (same shape). Backward: ``lam(t) = gH(t) + A(t+1) lam(t+1)``,
    ``dX = lam``, ``dA(t) = lam(t) H(t-1)``.
    """

    @staticmethod
    def forward(ctx: Any, A: Tensor, X: Tensor) -> Tensor:
        H = _scan(A, X)
        ctx.save_for_backward(A, H)
        return H

    @staticmethod
    def backward(ctx: Any, gH: Tensor) -> tuple[Tensor, Tensor]:
        A, H = ctx.saved_tensors
        lam = _adjoint(A, gH)
        return lam * _delay(H), lam


class LevelScan(torch.autograd.Function):
    """All states of one level: ``H(t) = f(t) H(t-1) + u(t) P(t-1)`` with ``P`` the first
    ``m`` states of the previous level's history ``H_prev`` (or ``P = 1`` when it is None).

    ``f, u``: ``[T, B, m]``; ``H_prev``: ``[T, B, m_prev]`` (``m_prev >= m``) or None.
    Backward: ``lam = adjoint(f, gH)``, ``df = lam H(t-1)``, ``du = lam P(t-1)``,
    ``dH_prev[t-1, :, :m] = lam(t) u(t)``.
    """

    @staticmethod
    def forward(ctx: Any, f: Tensor, u: Tensor, H_prev: Tensor | None) -> Tensor:
        m = f.shape[-1]
        P = None if H_prev is None else _delay(H_prev[..., :m])
        H = _scan(f, u if P is None else u * P)
        ctx.save_for_backward(f, u, H, P)
        ctx.prev_shape = None if H_prev is None else H_prev.shape
        return H

    @staticmethod
    def backward(ctx: Any, gH: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        f, u, H, P = ctx.saved_tensors
        lam = _adjoint(f, gH)
        df = lam * _delay(H)
        if P is None:
            return df, lam, None
        du = lam * P
        dH_prev = None
        if ctx.needs_input_grad[2]:
            dH_prev = lam.new_zeros(ctx.prev_shape)
            dH_prev[:-1, :, : f.shape[-1]] = lam[1:] * u[1:]
        return df, du, dH_prev


def _flush_tiny(g: Tensor) -> Tensor:
    tiny = torch.finfo(g.dtype).tiny * 2.0**52
    return torch.where(g.abs() < tiny, torch.zeros((), dtype=g.dtype, device=g.device), g)


class _FlushTinyGrad(torch.autograd.Function):
    """Identity whose backward sets gradients below ``finfo.tiny * 2^52`` (float32: ~2e-23)
    to zero. Gradients decay like products of hundreds of self-loop weights f < 1; in the
    weight-gradient matmul their products with the inputs become denormal and the CPU
    matmul runs ~25x slower. Values that small are far below the precision of the sums."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        return _flush_tiny(g)


def state_levels(is_first: Tensor | StateLayout) -> tuple[list[int], list[int], list[int]]:
    """``(perm, inverse, sizes)``: state order level by level (WFSAs longest first), its
    inverse, and the number of states of each level (:attr:`StateLayout.levels`; a layout
    is read directly, an ``is_first`` tensor is copied to the host once)."""
    return StateLayout.from_is_first(is_first).levels


def read_out(H: Tensor, real: Tensor | None, code: int) -> Tensor:
    """The readout ``code`` (:func:`.reference.readout_code`) of one level's history
    ``H [T, B, m]`` (padding carried over), ``[B, m]``; ``real``: ``[T, B]`` bool, or None
    when every token is real. Differentiable (the gradient reaches :class:`LevelScan`)."""
    if code == FINAL:
        return H[-1]
    T, B = H.shape[:2]
    if real is None:
        real = torch.ones(T, B, dtype=torch.bool, device=H.device)
    length = real.sum(0)  # [B]
    if code == MEAN:
        r = real.to(H.dtype) / length.clamp(min=1).to(H.dtype)  # r_b(t) = [t real] / L_b
        return torch.einsum("tbm,tb->bm", H, r)
    neg = torch.full((), float("-inf"), dtype=H.dtype, device=H.device)
    step = torch.where(real[..., None], H, neg).argmax(0, keepdim=True)  # first argmax
    return torch.where(length[:, None] > 0, H.gather(0, step)[0], 0.0)


def _level_histories(
    x: Tensor, w: Tensor, v: Tensor, b: Tensor, layout: StateLayout, mask: Tensor | None
) -> tuple[list[Tensor], Tensor | None]:
    """Every level's history ``H_k [T, B, m_k]`` (states in level order, padding carried
    over) and the real-token mask ``[T, B]`` (None: every token is real)."""
    T, B, e = x.shape
    N = w.shape[1]
    if N == 0 or T == 0:
        return [], None if mask is None else mask.to(device=x.device, dtype=torch.bool)
    _, _, sizes = layout.levels
    idx = layout.perm(w.device)
    W = torch.cat([w.index_select(1, idx), v.index_select(1, idx)], dim=1)
    proj = (x.reshape(T * B, e) @ W).view(T, B, 2 * N)
    if proj.dtype in (torch.float16, torch.bfloat16):  # half projections (autocast): recur in float32
        proj, b = proj.float(), b.float()
    if proj.device.type == "cpu" and proj.requires_grad:
        proj = _FlushTinyGrad.apply(proj)
    z, a = proj.split(N, dim=-1)
    f = torch.sigmoid(a + b.index_select(0, idx))
    u = z * (1 - f)
    real = None
    if mask is not None:
        real = mask.to(device=f.device, dtype=torch.bool)
        m = real[..., None]
        f = torch.where(m, f, torch.ones((), dtype=f.dtype, device=f.device))
        u = torch.where(m, u, torch.zeros((), dtype=u.dtype, device=u.device))
    histories: list[Tensor] = []
    H = None
    for f_k, u_k in zip(f.split(sizes, dim=-1), u.split(sizes, dim=-1)):
        # level k: predecessors are the first m_k states of level k-1, one step earlier
        H = LevelScan.apply(f_k.contiguous(), u_k.contiguous(), H)
        histories.append(H)
    return histories, real


def rational_forward_scan(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    readout: str = "final",
) -> Tensor:
    """Plus-times states read out per document, ``[B, N]`` (parallel scan; readouts as in
    :mod:`.reference`: ``final`` ``c(T)``, ``mean`` or ``max`` over the real tokens).

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``; ``is_first``: ``[N]`` bool;
    ``mask``: ``[T, B]`` bool (True at real tokens; at padding ``f = 1, u = 0``) or None.
    """
    code = readout_code(readout)
    T, B, _ = x.shape
    layout = StateLayout.from_is_first(is_first)
    histories, real = _level_histories(x, w, v, b, layout, mask)
    if not histories:
        return x.new_zeros(B, w.shape[1])
    out = torch.cat([read_out(H, real, code) for H in histories], dim=-1)
    return out.index_select(1, layout.inverse(out.device))  # cached: no host copy per call


def rational_steps_scan(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
) -> Tensor:
    """Every step's WFSA scores ``[T, B, d]`` (:func:`.reference.rational_steps_ref`) from
    the level histories of the scan; the gradient reaches :class:`LevelScan` at every step."""
    T, B, _ = x.shape
    layout = StateLayout.from_is_first(is_first)
    d = len(layout.structure)
    histories, real = _level_histories(x, w, v, b, layout, mask)
    if not histories:
        return x.new_zeros(T, B, d)
    owner = layout.owner(x.device).index_select(0, layout.perm(x.device))
    return wfsa_sums(torch.cat(histories, dim=-1), owner, d, real)


__all__ = ["LevelScan", "LinearScan", "rational_forward_scan", "rational_steps_scan", "read_out", "state_levels"]

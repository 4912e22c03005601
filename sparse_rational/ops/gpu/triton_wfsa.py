"""Triton kernels of the rational recurrence (CUDA), with a hand-written backward.

:func:`rational_forward_triton` has the signature of
:func:`sparse_rational.ops.reference.rational_forward_ref`. Division of labour:

- PyTorch (cuBLAS): the projection ``proj = x @ [w | v]`` (``[T, B, 2N]``, one matmul; the
  columns permuted level-major as in :mod:`..scan`), and in the backward the chain rule from
  ``d proj`` to ``x, w, v`` (autograd through the matmul) and ``d b = sum d a``.
- The forward kernel fuses ``f = sigmoid(a + b)``, ``u = z (1 - f)`` (``z, a`` the two halves
  of ``proj``), the padding mask (``f = 1, u = 0`` at pads: states carried over) and the time
  loop ``c_k(t) = f_k(t) c_k(t-1) + u_k(t) c_{k-1}(t-1)`` (``c_0 = 1``). One program per
  (batch element, block of ``BLOCK_J`` WFSAs) holds the states of all levels of its WFSAs in
  registers as an ``[LP, BLOCK_J]`` tile (``LP`` = the longest WFSA, rounded up to a power of
  two; row ``k`` = state ``q_{k+1}``; WFSAs shorter than a level are masked and stay 0), one
  warp per program with the WFSAs across its lanes (``BLOCK_J <= 32``). The predecessor tile
  (rows shifted down by one, row 0 = 1) is a ``tl.gather`` along the level axis (no barrier
  in the SASS; a masked ``[LP, LP, BLOCK_J]`` reduction cost two barriers a step). Time is
  unrolled by ``TC`` steps (``tl.static_range``). The readout (a constexpr, see
  :mod:`..reference`) is fused into the time loop as a second register tile: ``final``
  writes ``c(T)``; ``mean`` a running sum of ``c(t)`` over the real steps, divided by
  ``L_b`` (``lengths``) at the end; ``max`` a running maximum (replaced only by a strictly
  larger value) and its step, an int32 tile written as ``argmax [B, N]`` (-1: no real
  step, the readout is then 0). When a backward will follow it also writes every ``c(t)``
  (``[T, B, N]``, the "history").
- The backward kernel runs the adjoint recurrence backwards in time, reading the stored
  history (nothing is recomputed but ``f, u`` from ``proj``), with the readout's gradient
  ``G = dL/dy`` injected where ``y`` reads the states: ``lam(T-1) = G`` (final), ``lam(t) +=
  G / L_b`` at every real step (mean), ``lam(t) += G`` at the argmax step (max)::

      du_k(t) = lam_k(t) c_{k-1}(t-1),  df_k(t) = lam_k(t) c_k(t-1)
      lam_k(t-1) = f_k(t) lam_k(t) + u_{k+1}(t) lam_{k+1}(t)          (unchanged at pads)
      dz = du (1 - f),  da = (df - du z) f (1 - f)                     (0 at pads)

  and writes ``d proj`` (``[T, B, 2N]``).

float32 and float64 run natively; other floating dtypes are computed in float32.
The kernels are wrapped with ``triton.jit`` on first use; with ``TRITON_INTERPRET=1`` in the
environment and CPU tensors they run under Triton's interpreter (how the tests check them
on machines without a GPU).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from ...layout import StateLayout
from ..reference import FINAL, MAX, MEAN, readout_code, wfsa_sums

TC = 8  # time steps unrolled per chunk
# the readout codes, as the kernels' READOUT argument takes them
_FINAL, _MEAN, _MAX = tl.constexpr(FINAL), tl.constexpr(MEAN), tl.constexpr(MAX)
STEPS = 3  # the backward's code for "every step" (not a readout of READOUTS): G = dL/dc(t), [T, B, N]
_STEPS = tl.constexpr(STEPS)


def _wfsa_fwd(  # type: ignore[no-untyped-def]  # a triton kernel: triton.jit reads its annotations
    proj_ptr,
    bias_ptr,
    off_ptr,
    size_ptr,
    mask_ptr,
    len_ptr,
    out_ptr,
    arg_ptr,
    hist_ptr,
    T,
    N,
    s_pt,
    s_pb,
    s_mt,
    s_mb,
    s_ht,
    s_hb,
    L: tl.constexpr,
    LP: tl.constexpr,
    BLOCK_J: tl.constexpr,
    TC: tl.constexpr,
    HAS_MASK: tl.constexpr,
    SAVE: tl.constexpr,
    READOUT: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    bidx = tl.program_id(0)
    jb = tl.program_id(1)
    rows = tl.arange(0, LP)
    j = jb * BLOCK_J + tl.arange(0, BLOCK_J)
    off = tl.load(off_ptr + rows, mask=rows < L, other=0)
    size = tl.load(size_ptr + rows, mask=rows < L, other=0)
    valid = j[None, :] < size[:, None]  # [LP, BLOCK_J]; rows >= L have size 0
    col = tl.where(valid, off[:, None] + j[None, :], 0)
    bias = tl.load(bias_ptr + col, mask=valid, other=0.0)
    c = tl.full([LP, BLOCK_J], 0.0, bias.dtype)
    # the readout's tiles: mean: the sum of c(t); max: the running max and its step
    acc = tl.full([LP, BLOCK_J], 0.0, bias.dtype)
    if READOUT == _MAX:
        acc = tl.full([LP, BLOCK_J], float("-inf"), bias.dtype)
    arg = tl.full([LP, BLOCK_J], -1, tl.int32)
    first = rows[:, None] == 0
    # level k-1 of each WFSA, in registers (each lane holds all levels of its WFSA)
    pred_idx = tl.maximum(rows[:, None] - 1, 0) + tl.full([LP, BLOCK_J], 0, tl.int32)
    z_base = proj_ptr + bidx.to(tl.int64) * s_pb + col
    a_base = z_base + N
    h_base = hist_ptr + bidx.to(tl.int64) * s_hb + col
    m_base = mask_ptr + bidx.to(tl.int64) * s_mb
    for t0 in tl.range(0, T, TC, num_stages=NUM_STAGES):
        for i in tl.static_range(TC):
            t = t0 + i
            live = t < T
            lm = valid & live
            z = tl.load(z_base + t * s_pt, mask=lm, other=0.0)
            a = tl.load(a_base + t * s_pt, mask=lm, other=0.0)
            f = 1.0 / (1.0 + tl.exp(-(a + bias)))
            u = z * (1.0 - f)
            prev = tl.where(first, 1.0, tl.gather(c, pred_idx, axis=0))
            new = f * c + u * prev
            go = live
            if HAS_MASK:
                go = go & (tl.load(m_base + t * s_mt, mask=live, other=0) != 0)
            c = tl.where(go, new, c)
            if READOUT == _MEAN:
                acc += tl.where(go, c, 0.0)
            if READOUT == _MAX:
                better = go & (c > acc)  # strict: a tie keeps the first step
                acc = tl.where(better, c, acc)
                arg = tl.where(better, t, arg)
            if SAVE:
                tl.store(h_base + t * s_ht, c, mask=lm)
    y = c
    if READOUT == _MEAN:
        y = acc / tl.maximum(tl.load(len_ptr + bidx), 1).to(acc.dtype)
    if READOUT == _MAX:
        y = tl.where(arg >= 0, acc, 0.0)
        tl.store(arg_ptr + bidx.to(tl.int64) * N + col, arg, mask=valid)
    tl.store(out_ptr + bidx.to(tl.int64) * N + col, y, mask=valid)


def _wfsa_bwd(  # type: ignore[no-untyped-def]  # a triton kernel: triton.jit reads its annotations
    grad_ptr,
    proj_ptr,
    bias_ptr,
    off_ptr,
    size_ptr,
    mask_ptr,
    len_ptr,
    arg_ptr,
    hist_ptr,
    dproj_ptr,
    T,
    N,
    s_pt,
    s_pb,
    s_mt,
    s_mb,
    s_ht,
    s_hb,
    s_dt,
    s_db,
    L: tl.constexpr,
    LP: tl.constexpr,
    BLOCK_J: tl.constexpr,
    TC: tl.constexpr,
    HAS_MASK: tl.constexpr,
    READOUT: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    bidx = tl.program_id(0)
    jb = tl.program_id(1)
    rows = tl.arange(0, LP)
    j = jb * BLOCK_J + tl.arange(0, BLOCK_J)
    off = tl.load(off_ptr + rows, mask=rows < L, other=0)
    size = tl.load(size_ptr + rows, mask=rows < L, other=0)
    valid = j[None, :] < size[:, None]
    col = tl.where(valid, off[:, None] + j[None, :], 0)
    bias = tl.load(bias_ptr + col, mask=valid, other=0.0)
    G = tl.load(grad_ptr + bidx.to(tl.int64) * N + col, mask=valid, other=0.0)  # dL/dy
    lam = G
    if READOUT != _FINAL:
        lam = tl.zeros_like(G)
    if READOUT == _MEAN:
        G = G / tl.maximum(tl.load(len_ptr + bidx), 1).to(G.dtype)
    arg = tl.full([LP, BLOCK_J], -1, tl.int32)
    if READOUT == _MAX:
        arg = tl.load(arg_ptr + bidx.to(tl.int64) * N + col, mask=valid, other=-1)
    first = rows[:, None] == 0
    last = rows[:, None] == LP - 1
    pred_idx = tl.maximum(rows[:, None] - 1, 0) + tl.full([LP, BLOCK_J], 0, tl.int32)
    succ_idx = tl.minimum(rows[:, None] + 1, LP - 1) + tl.full([LP, BLOCK_J], 0, tl.int32)
    z_base = proj_ptr + bidx.to(tl.int64) * s_pb + col
    a_base = z_base + N
    h_base = hist_ptr + bidx.to(tl.int64) * s_hb + col
    g_base = grad_ptr + bidx.to(tl.int64) * s_hb + col  # steps: grad is [T, B, N], laid out as hist
    dz_base = dproj_ptr + bidx.to(tl.int64) * s_db + col
    da_base = dz_base + N
    m_base = mask_ptr + bidx.to(tl.int64) * s_mb
    for t0 in tl.range(0, T, TC, num_stages=NUM_STAGES):
        for i in tl.static_range(TC):
            t = T - 1 - (t0 + i)
            live = t >= 0
            lm = valid & live
            z = tl.load(z_base + t * s_pt, mask=lm, other=0.0)
            a = tl.load(a_base + t * s_pt, mask=lm, other=0.0)
            cp = tl.load(h_base + (t - 1) * s_ht, mask=lm & (t > 0), other=0.0)  # c(t-1)
            f = 1.0 / (1.0 + tl.exp(-(a + bias)))
            omf = 1.0 - f
            u = z * omf
            prev = tl.where(first, 1.0, tl.gather(cp, pred_idx, axis=0))
            go = live
            if HAS_MASK:
                go = go & (tl.load(m_base + t * s_mt, mask=live, other=0) != 0)
            if READOUT == _MEAN:  # y reads every real step
                lam += tl.where(go, G, 0.0)
            if READOUT == _MAX:  # y reads the argmax step
                lam += tl.where(go & (arg == t), G, 0.0)
            if READOUT == _STEPS:  # every step is read (at a pad c(t) = c(t-1): carried back)
                lam += tl.load(g_base + t * s_ht, mask=lm, other=0.0)
            du = lam * prev
            df = lam * cp
            dz = tl.where(go, du * omf, 0.0)
            da = tl.where(go, (df - du * z) * f * omf, 0.0)
            tl.store(dz_base + t * s_dt, dz, mask=lm)
            tl.store(da_base + t * s_dt, da, mask=lm)
            ul = u * lam
            nxt = f * lam + tl.where(last, 0.0, tl.gather(ul, succ_idx, axis=0))
            lam = tl.where(go, nxt, lam)


@lru_cache(maxsize=2)
def _kernels(interpret: bool) -> tuple[Any, Any]:
    """``(forward, backward)`` kernels, compiled (``triton.jit``) or interpreted."""
    if interpret:
        return InterpretedFunction(_wfsa_fwd), InterpretedFunction(_wfsa_bwd)
    # integer arguments are not specialized (T == 1, multiples of 16): fewer compilations
    ints_fwd = ["T", "N", "s_pt", "s_pb", "s_mt", "s_mb", "s_ht", "s_hb"]
    return (
        triton.jit(_wfsa_fwd, do_not_specialize=ints_fwd),
        triton.jit(_wfsa_bwd, do_not_specialize=ints_fwd + ["s_dt", "s_db"]),
    )


def _interpreting(t: Tensor) -> bool:
    if t.device.type == "cuda":
        return False
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False"):
        return True
    raise RuntimeError(
        f"the triton kernel needs CUDA tensors (got {t.device.type}); set TRITON_INTERPRET=1 "
        "to run it under Triton's interpreter"
    )


@lru_cache(maxsize=64)
def _level_tables(flags: tuple[bool, ...], device: str) -> tuple[Tensor, Tensor, Tensor, Tensor, int, int]:
    perm, inverse, sizes = StateLayout.from_is_first(torch.tensor(flags, dtype=torch.bool)).levels
    offsets = [0]
    for m in sizes[:-1]:
        offsets.append(offsets[-1] + m)
    dev = torch.device(device)
    return (
        torch.tensor(perm, device=dev),
        torch.tensor(inverse, device=dev),
        torch.tensor(offsets, dtype=torch.int32, device=dev),
        torch.tensor(sizes, dtype=torch.int32, device=dev),
        len(sizes),
        sizes[0] if sizes else 0,
    )


def _loop_bound(T: int, interpret: bool) -> Any:
    """The time-loop bound argument. Triton 3.6's interpreter wraps int arguments in
    1-element arrays that ``range()`` cannot take under NumPy >= 2.4; a constexpr works."""
    return tl.constexpr(T) if interpret else T


def _launch_params(L: int, d: int) -> tuple[int, int, int]:
    """``(LP, BLOCK_J, num_warps)``: the tile is ``[LP, BLOCK_J]``, one warp with the WFSAs
    across its lanes and each lane holding all levels of its WFSA in registers, so the level
    shifts need no shuffles (checked in the SASS for sm_90)."""
    LP = triton.next_power_of_2(max(L, 1))
    BLOCK_J = max(2, min(triton.next_power_of_2(max(d, 1)), 32))
    return LP, BLOCK_J, 1


def _num_stages(LP: int, BJ: int, itemsize: int, tensors: int) -> int:
    """Software-pipelining depth of the chunk loop: chunk ``k+1``'s inputs are copied to shared
    memory (``cp.async``) while chunk ``k`` runs, so the serial time loop does not wait for
    global memory; without it the history stores keep the compiler from hoisting the loads.
    Limited to ~96 KiB of shared memory (1 = no pipelining)."""
    per_stage = TC * tensors * LP * BJ * itemsize
    for stages in (3, 2):
        if stages * per_stage <= 96 * 1024:
            return stages
    return 1


def _mask_args(mask: Tensor | None, dummy: Tensor) -> tuple[Tensor, int, int]:
    if mask is None:
        return dummy, 0, 0
    return mask, mask.stride(0), mask.stride(1)


def _lengths(mask: Tensor | None, T: int, B: int, device: torch.device | str) -> Tensor:
    """``L_b`` ``[B]`` int32: the real tokens of each document (the mean readout divides by it)."""
    if mask is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    return mask.sum(0, dtype=torch.int32)


def _run_forward(
    proj: Tensor,
    bias: Tensor,
    mask: Tensor | None,
    lengths: Tensor,
    offsets: Tensor,
    sizes: Tensor,
    L: int,
    d: int,
    readout: int,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y [B, N], history [T, B, N] or a dummy, argmax [B, N] int32 or a dummy)``: the
    forward kernel (``readout``: the code of :func:`..reference.readout_code`)."""
    T, B, N2 = proj.shape
    N = N2 // 2
    out = proj.new_empty(B, N)
    hist = proj.new_empty(T, B, N) if save else proj.new_empty(1, 1, 1)
    arg = torch.empty((B, N) if readout == MAX else (1, 1), dtype=torch.int32, device=proj.device)
    LP, BJ, nw = _launch_params(L, d)
    interp = _interpreting(proj)
    fwd, _ = _kernels(interp)
    m, smt, smb = _mask_args(mask, proj)
    fwd[(B, triton.cdiv(d, BJ))](
        proj,
        bias,
        offsets,
        sizes,
        m,
        lengths,
        out,
        arg,
        hist,
        _loop_bound(T, interp),
        N,
        proj.stride(0),
        proj.stride(1),
        smt,
        smb,
        hist.stride(0),
        hist.stride(1),
        L=L,
        LP=LP,
        BLOCK_J=BJ,
        TC=TC,
        HAS_MASK=mask is not None,
        SAVE=save,
        READOUT=readout,
        NUM_STAGES=_num_stages(LP, BJ, proj.element_size(), 2),
        num_warps=nw,
    )
    return out, hist, arg


def _run_backward(
    grad: Tensor,
    proj: Tensor,
    bias: Tensor,
    mask: Tensor | None,
    lengths: Tensor,
    offsets: Tensor,
    sizes: Tensor,
    L: int,
    d: int,
    readout: int,
    hist: Tensor,
    arg: Tensor,
) -> Tensor:
    """``d proj [T, B, 2N]``: the backward kernel (``grad = dL/dy``, ``[B, N]``)."""
    T, B, N2 = proj.shape
    N = N2 // 2
    grad = grad.contiguous().to(proj.dtype)
    dproj = torch.empty(T, B, N2, dtype=proj.dtype, device=proj.device)
    LP, BJ, nw = _launch_params(L, d)
    interp = _interpreting(proj)
    _, bwd = _kernels(interp)
    m, smt, smb = _mask_args(mask, proj)
    bwd[(B, triton.cdiv(d, BJ))](
        grad,
        proj,
        bias,
        offsets,
        sizes,
        m,
        lengths,
        arg,
        hist,
        dproj,
        _loop_bound(T, interp),
        N,
        proj.stride(0),
        proj.stride(1),
        smt,
        smb,
        hist.stride(0),
        hist.stride(1),
        dproj.stride(0),
        dproj.stride(1),
        L=L,
        LP=LP,
        BLOCK_J=BJ,
        TC=TC,
        HAS_MASK=mask is not None,
        READOUT=readout,
        NUM_STAGES=_num_stages(LP, BJ, proj.element_size(), 3),
        num_warps=nw,
    )
    return dproj


class TritonRecurrence(torch.autograd.Function):
    """``y = TritonRecurrence.apply(proj, bias, mask, offsets, sizes, L, d, save, readout)``.

    ``proj``: ``[T, B, 2N]`` (``[z | a]``, level-major columns, last dim contiguous);
    ``bias``: ``[N]``; ``mask``: ``[T, B]`` uint8 or None; ``offsets, sizes``: ``[L]`` int32,
    the first column and the number of states of each level (WFSAs longest first); ``d``:
    the number of WFSAs; ``save``: keep every ``c(t)`` for the backward (else the backward
    recomputes them); ``readout``: a name of :data:`..reference.READOUTS` (default
    ``"final"``). Returns the readout ``[B, N]`` in the same level-major order.
    """

    @staticmethod
    def forward(
        ctx: Any,
        proj: Tensor,
        bias: Tensor,
        mask: Tensor | None,
        offsets: Tensor,
        sizes: Tensor,
        L: int,
        d: int,
        save: bool,
        readout: str = "final",
    ) -> Tensor:
        code = readout_code(readout)
        T, B = proj.shape[:2]
        lengths = _lengths(mask, T, B, proj.device)
        out, hist, arg = _run_forward(proj, bias, mask, lengths, offsets, sizes, L, d, code, save)
        ctx.save_for_backward(proj, bias, mask, lengths, offsets, sizes, hist, arg)
        ctx.L, ctx.d, ctx.saved_hist, ctx.code = L, d, save, code
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        proj, bias, mask, lengths, offsets, sizes, hist, arg = ctx.saved_tensors
        args = (proj, bias, mask, lengths, offsets, sizes, ctx.L, ctx.d, ctx.code)
        if not ctx.saved_hist:  # the states were not kept: recompute them
            hist = _run_forward(*args, True)[1]
        dproj = _run_backward(grad, *args, hist, arg)
        N = proj.shape[-1] // 2
        dbias = dproj[..., N:].sum(dim=(0, 1)) if ctx.needs_input_grad[1] else None
        return dproj, dbias, None, None, None, None, None, None, None


def rational_forward_triton(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    readout: str = "final",
) -> Tensor:
    """Plus-times states read out per document, ``[B, N]`` (Triton kernel; readouts as in
    :mod:`..reference`: ``final`` ``c(T)``, ``mean`` or ``max`` over the real tokens).

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``; ``is_first``: ``[N]`` bool;
    ``mask``: ``[T, B]`` bool (True at real tokens) or None. CUDA tensors (CPU tensors only
    under ``TRITON_INTERPRET=1``); float32/float64 natively, other dtypes via float32.
    """
    readout_code(readout)
    T, B, e = x.shape
    N = w.shape[1]
    if N == 0 or B == 0 or T == 0:
        return x.new_zeros(B, N)
    flags = StateLayout.from_is_first(is_first).flags  # a layout needs no copy from the device
    perm, inverse, offsets, sizes, L, d = _level_tables(flags, str(x.device))
    W = torch.cat([w.index_select(1, perm), v.index_select(1, perm)], dim=1)
    proj = (x.reshape(T * B, e) @ W).view(T, B, 2 * N)
    bias = b.index_select(0, perm)
    dtype = proj.dtype
    if dtype not in (torch.float32, torch.float64):
        proj, bias = proj.float(), bias.float()
    bias = bias.to(proj.dtype)
    if proj.numel() >= 2**31:
        raise ValueError("triton kernel: T * B * 2N must be below 2^31 (32-bit offsets)")
    m = None
    if mask is not None:
        m = mask.to(device=proj.device, dtype=torch.uint8)
    save = torch.is_grad_enabled() and (proj.requires_grad or bias.requires_grad)
    out = TritonRecurrence.apply(proj, bias, m, offsets, sizes, L, d, save, readout)
    out = out.index_select(1, inverse)
    return out if dtype in (torch.float16, torch.bfloat16) else out.to(dtype)  # half in: float32 out


class TritonSteps(torch.autograd.Function):
    """``H = TritonSteps.apply(proj, bias, mask, offsets, sizes, L, d)``: every ``c(t)``,
    ``[T, B, N]`` (level-major columns, carried over at padding), from the forward kernel's
    history; the backward kernel injects ``dL/dc(t)`` at every step."""

    @staticmethod
    def forward(
        ctx: Any, proj: Tensor, bias: Tensor, mask: Tensor | None, offsets: Tensor, sizes: Tensor, L: int, d: int
    ) -> Tensor:
        T, B = proj.shape[:2]
        lengths = _lengths(mask, T, B, proj.device)
        _, hist, arg = _run_forward(proj, bias, mask, lengths, offsets, sizes, L, d, FINAL, True)
        ctx.save_for_backward(proj, bias, mask, lengths, offsets, sizes, hist, arg)
        ctx.L, ctx.d = L, d
        return hist

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        proj, bias, mask, lengths, offsets, sizes, hist, arg = ctx.saved_tensors
        dproj = _run_backward(grad, proj, bias, mask, lengths, offsets, sizes, ctx.L, ctx.d, STEPS, hist, arg)
        N = proj.shape[-1] // 2
        dbias = dproj[..., N:].sum(dim=(0, 1)) if ctx.needs_input_grad[1] else None
        return dproj, dbias, None, None, None, None, None


def rational_steps_triton(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
) -> Tensor:
    """Every step's WFSA scores ``[T, B, d]`` (:func:`..reference.rational_steps_ref`; zero
    at padding) from the Triton kernels. CUDA tensors (CPU only under ``TRITON_INTERPRET=1``)."""
    layout = StateLayout.from_is_first(is_first)
    T, B, e = x.shape
    N, d = w.shape[1], len(layout.structure)
    if N == 0 or B == 0 or T == 0:
        return x.new_zeros(T, B, d)
    perm, inverse, offsets, sizes, L, _ = _level_tables(layout.flags, str(x.device))
    W = torch.cat([w.index_select(1, perm), v.index_select(1, perm)], dim=1)
    proj = (x.reshape(T * B, e) @ W).view(T, B, 2 * N)
    bias = b.index_select(0, perm)
    dtype = proj.dtype
    if dtype not in (torch.float32, torch.float64):
        proj, bias = proj.float(), bias.float()
    bias = bias.to(proj.dtype)
    if proj.numel() >= 2**31:
        raise ValueError("triton kernel: T * B * 2N must be below 2^31 (32-bit offsets)")
    m = None if mask is None else mask.to(device=proj.device, dtype=torch.uint8)
    H = TritonSteps.apply(proj, bias, m, offsets, sizes, L, d).index_select(2, inverse).to(dtype)
    return wfsa_sums(H, layout.owner(x.device), d, mask)


__all__ = ["TritonRecurrence", "TritonSteps", "rational_forward_triton", "rational_steps_triton"]

"""Pure-PyTorch reference of the rational recurrence: one loop over time, any semiring.

Layout ("flat"): the states of all WFSAs of a layer are numbered s = 0..N-1, WFSA by WFSA,
q_1 first (N = sum_j n_j = the number of main-path transitions). ``is_first[s]`` is True
when s is the state q_1 of its WFSA, whose predecessor q_0 has the constant value "one".
This layout costs what the transitions cost whatever the mix of lengths.

Every fast implementation in :mod:`sparse_rational.ops` has the signature of
:func:`rational_forward_ref` and is tested against it, for every readout.

**Readouts.** With ``c_s(t)`` the state after reading token ``t`` (carried over unchanged
at padding), ``R_b`` the real tokens of document ``b`` (``mask[:, b]``; all ``T`` without a
mask) and ``L_b = |R_b|``, the layer returns per state ``s``::

    final:  y_bs = c_bs(T_b)                      T_b = the last real token of b
    mean:   y_bs = (1 / L_b) sum_{t in R_b} c_bs(t)
    max:    y_bs = max_{t in R_b} c_bs(t)          the gradient goes to the argmax step
                                                   (ties: the first step reaching the max)

Padding never counts, and a document without real tokens reads 0 in all three. A state
whose group is zero (``w_s = v_s = 0, b_s = 0``) has ``u_s = 0`` and stays at ``c_s = 0``
at every step, so all three readouts give it exactly 0 (pruning it preserves the function).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from ..errors import UserError
from ..layout import StateLayout, is_first_tensor
from ..semiring import PLUS_TIMES, Element, Semiring

READOUTS = ("final", "mean", "max")
"""The readouts of the states, in the order of their codes (:func:`readout_code`)."""

FINAL, MEAN, MAX = range(len(READOUTS))


class ReadoutError(UserError, ValueError):
    """An unknown readout name; one line (a :class:`UserError` and a :class:`ValueError`)."""


def readout_code(readout: str) -> int:
    """The index of ``readout`` in :data:`READOUTS` (``FINAL``, ``MEAN`` or ``MAX``): how the
    kernels take it; anything else is a :class:`ReadoutError`."""
    if isinstance(readout, str) and readout in READOUTS:
        return READOUTS.index(readout)
    raise ReadoutError(f"unknown readout {readout!r}; use one of: {', '.join(READOUTS)}")


def shift_states(semiring: Semiring, c: Element, is_first: Tensor) -> Element:
    """Predecessor values: ``p_s = c_{s-1}`` inside a WFSA, ``one`` for each q_1 (``[..., N]``)."""
    one = semiring.one(c[0])
    rolled = tuple(torch.roll(x, 1, dims=-1) for x in c)
    return semiring.where(is_first, one, rolled)


def semiring_dp(
    u: Tensor,
    f: Tensor,
    is_first: Tensor,
    mask: Tensor | None = None,
    semiring: Semiring = PLUS_TIMES,
    return_all: bool = False,
) -> Element | tuple[Element, list[Element]]:
    """The Forward algorithm of chain WFSAs with self-loops, over any semiring.

    Shapes: ``u, f``: ``[T, B, N]`` main-path and self-loop transition weights at each
    token; ``is_first``: ``[N]`` bool; ``mask``: ``[T, B]`` bool, True at real tokens (at
    padding the states are carried over unchanged, so right padding is exact).

    Recurrence (``(+)``/``(x)`` the semiring's plus and times, ``c_s(0) = zero``)::

        c_s(t) = f_s(t) (x) c_s(t-1)  (+)  u_s(t) (x) p_s(t-1),
        p_s    = one if is_first[s] else c_{s-1}

    Returns the element ``c(T)`` (a tuple of ``[B, N]`` tensors); with ``return_all``
    also the list of ``c(1)..c(T)`` (for backpointers).
    """
    T, B, N = u.shape
    c = semiring.zero(u.new_zeros(B, N))
    history: list[Element] = []
    steps = zip(u.unbind(0), f.unbind(0), mask.unbind(0) if mask is not None else [None] * T)
    for u_t, f_t, m_t in steps:
        prev = shift_states(semiring, c, is_first)
        new = semiring.plus(semiring.scale(f_t, c), semiring.scale(u_t, prev))
        c = new if m_t is None else semiring.where(m_t[:, None], new, c)
        if return_all:
            history.append(c)
    return (c, history) if return_all else c


def transition_weights(x: Tensor, w: Tensor, v: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Main-path and self-loop weights (see docs/DESIGN.md, 'The model').

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``. One matmul for all steps::

        f = sigmoid(x v + b),   u = (x w) * (1 - f)        both [T, B, N]
    """
    T, B, e = x.shape
    proj = x.reshape(T * B, e) @ torch.cat([w, v], dim=1)
    n = w.shape[1]
    f = torch.sigmoid(proj[:, n:] + b)
    u = proj[:, :n] * (1 - f)
    return u.view(T, B, n), f.view(T, B, n)


def pool_states(states: list[Tensor], mask: Tensor | None, readout: str) -> Tensor:
    """The readout (module doc) of the states ``c(1) .. c(T)`` (a non-empty list of ``[B, N]``
    tensors, carried over at padding), one step at a time: the last state (final), a running
    sum (mean), or a running maximum replaced only by a strictly larger value (max: a tie
    keeps the first step, and autograd's ``where`` sends the gradient there)."""
    code = readout_code(readout)
    if code == FINAL:
        return states[-1]
    T = len(states)
    real = [None] * T if mask is None else [m[:, None] for m in mask.unbind(0)]
    c0 = states[0]
    if mask is None:
        length = torch.full((c0.shape[0], 1), T, dtype=c0.dtype, device=c0.device)
    else:
        length = mask.sum(0, keepdim=True).t().to(c0.dtype)
    if code == MEAN:
        total = torch.zeros_like(c0)
        for c, m in zip(states, real, strict=True):
            total = total + (c if m is None else torch.where(m, c, 0.0))
        return total / length.clamp(min=1)
    best = torch.full_like(c0, float("-inf"))
    for c, m in zip(states, real, strict=True):
        better = c > best if m is None else (c > best) & m
        best = torch.where(better, c, best)
    return torch.where(length > 0, best, 0.0)


def rational_forward_ref(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    readout: str = "final",
) -> Tensor:
    """Plus-times states read out per document (module doc): ``[B, N]``.

    ``x``: ``[T, B, e]`` word vectors; ``w, v``: ``[e, N]``; ``b``: ``[N]``;
    ``is_first``: ``[N]`` bool; ``mask``: ``[T, B]`` bool or None; ``readout``: one of
    :data:`READOUTS` (``"final"``: ``c(T)``, the paper's model). Per-step inputs are taken
    with ``unbind(0)`` so that the backward stays linear in T; autograd differentiates it.
    """
    code = readout_code(readout)
    is_first = is_first_tensor(is_first, x.device)
    u, f = transition_weights(x, w, v, b)
    if code == FINAL or x.shape[0] == 0:
        return cast(Tensor, semiring_dp(u, f, is_first, mask, PLUS_TIMES)[0])
    _, history = semiring_dp(u, f, is_first, mask, PLUS_TIMES, return_all=True)
    return pool_states([c for (c,) in history], mask, readout)


def wfsa_sums(H: Tensor, owner: Tensor, num_wfsas: int, mask: Tensor | None) -> Tensor:
    """Per-step WFSA scores from per-step states: ``y_bj(t) = sum_{s of WFSA j} H_bs(t)``
    (``H``: ``[T, B, N]``, ``owner``: ``[N]`` long), ``[T, B, d]``, zero at padding."""
    T, B, _ = H.shape
    y = H.new_zeros(T, B, num_wfsas).index_add_(2, owner, H)
    if mask is not None:
        y = torch.where(mask.to(device=y.device, dtype=torch.bool)[..., None], y, 0.0)
    return y


def rational_steps_ref(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
) -> Tensor:
    """Every step's WFSA scores, ``[T, B, d]``: ``y_j(t) = sum_{i=1..n_j} c_ji(t)`` (all
    states final, the score a one-layer model reads at the end, here after every token),
    zero at padding. What a lower layer of a stacked model hands to the layer above.

    Shapes as :func:`rational_forward_ref`; autograd differentiates the loop."""
    layout = StateLayout.from_is_first(is_first)
    T, B, _ = x.shape
    d = len(layout.structure)
    if T == 0 or layout.num_states == 0:
        return x.new_zeros(T, B, d)
    u, f = transition_weights(x, w, v, b)
    _, history = semiring_dp(u, f, layout.is_first(x.device), mask, PLUS_TIMES, return_all=True)
    H = torch.stack([c for (c,) in history])
    return wfsa_sums(H, layout.owner(x.device), d, mask)


def reverse_index(mask: Tensor | None, T: int, B: int, device: torch.device | str = "cpu") -> Tensor:
    """``[T, B]`` long: position ``t`` of document ``b`` read right to left. Real tokens come
    first (right padding): ``L_b - 1 - t`` for ``t < L_b``, padding stays where it is. The
    map is its own inverse."""
    t = torch.arange(T, device=device)[:, None]
    if mask is None:
        return (T - 1 - t).expand(T, B)
    length = mask.to(device=device, dtype=torch.long).sum(0, keepdim=True)  # [1, B]
    return torch.where(t < length, length - 1 - t, t)


def reverse_documents(x: Tensor, mask: Tensor | None) -> Tensor:
    """Each document of ``x`` (``[T, B, ...]``, right-padded, ``mask [T, B]``) reversed
    within its real tokens; padding stays at the end (a backward WFSA reads this)."""
    T, B = x.shape[:2]
    idx = reverse_index(mask, T, B, x.device)
    return x.gather(0, idx.view(T, B, *([1] * (x.dim() - 2))).expand_as(x))

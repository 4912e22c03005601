"""Pure-PyTorch reference of the rational recurrence: one loop over time, any semiring.

Layout ("flat"): the states of all WFSAs of a layer are numbered s = 0..N-1, WFSA by WFSA,
q_1 first (N = sum_j n_j = the number of main-path transitions). ``is_first[s]`` is True
when s is the state q_1 of its WFSA, whose predecessor q_0 has the constant value "one".
This layout costs what the transitions cost whatever the mix of lengths.

Every fast implementation in :mod:`sparse_rational.ops` has the signature of
:func:`rational_forward_ref` and is tested against it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..semiring import PLUS_TIMES, Element, Semiring


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


def rational_forward_ref(
    x: Tensor, w: Tensor, v: Tensor, b: Tensor, is_first: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Plus-times state values at the end of each document: ``c(T)``, ``[B, N]``.

    ``x``: ``[T, B, e]`` word vectors; ``w, v``: ``[e, N]``; ``b``: ``[N]``;
    ``is_first``: ``[N]`` bool; ``mask``: ``[T, B]`` bool or None. Per-step inputs are
    taken with ``unbind(0)`` so that the backward stays linear in T.
    """
    u, f = transition_weights(x, w, v, b)
    return semiring_dp(u, f, is_first, mask, PLUS_TIMES)[0]

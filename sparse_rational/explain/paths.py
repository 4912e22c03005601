"""The best and the worst single path of each WFSA over a document, with backpointers.

The model scores a document with the plus-times semiring (the sum over all paths). To show
*what* a WFSA matched we want the single highest- (max-times) or lowest-scoring (min-times)
path instead (see docs/DESIGN.md, 'Best paths for explanations'). Both come from the model's own dynamic program,
:func:`sparse_rational.ops.reference.semiring_dp`, run with :data:`MAX_TIMES` /
:data:`MIN_TIMES` and ``return_all=True``; this module only *backtracks* through the
history it returns. There is no second copy of the recurrence here.

Main-path weights ``u`` can be negative, so the max-/min-times elements are intervals
``(hi, lo)``: the largest and the smallest product over all paths reaching a state. The
best path into ``q_i`` at token ``t`` ends either in a self-loop (``f (x) c_i(t-1)``) or in
a main-path transition (``u (x) c_{i-1}(t-1)``), and it extends either the largest or the
smallest product of its predecessor (the smallest when the last weight is negative). The
backtracking step recomputes these four candidates from the history and follows the one
that produced the stored bound, then repeats with that predecessor and that bound.

A path reads every real token of the document: it stays in ``q_0`` (implicit self-loop of
weight 1, nothing "consumed") until its first transition, then at each token either
advances ``q_{i-1} -> q_i`` (weight ``u_i``) or takes the self-loop of its state (weight
``f_i``). It ends in any final state ``q_1..q_{n_j}`` at the document's end, where the model
reads its scores; the best path of WFSA ``j`` is the best over those final states.

Positions are indices into the sequence the model read (``<s> w_1 .. w_n </s>`` for word
vectors). For contextual vectors over word pieces, the same positions index the pieces;
map them to words with the encoder's offsets when displaying (see :mod:`.table`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..ops.reference import semiring_dp
from ..semiring import MAX_TIMES, MIN_TIMES, MaxMinTimes

NOT_READ = -1  # ``states[t]`` of a masked (padding) position: the path does not read it


@dataclass(frozen=True)
class WFSAPath:
    """One path of WFSA ``wfsa`` through a document.

    ``states[t]``: the state (``0..n``) the path is in after reading token ``t``
    (``NOT_READ`` at masked positions). ``score``: the product of its transition weights.
    """

    wfsa: int
    kind: str  # "best" (max-times) or "worst" (min-times)
    score: float
    states: tuple[int, ...]

    @property
    def end_state(self) -> int:
        """``k``: the final state the path ends in (``1..n``)."""
        read = [s for s in self.states if s != NOT_READ]
        return read[-1] if read else 0

    def transitions(self) -> list[int]:
        """Token positions of the main-path transitions ``q_0->q_1, .., q_{k-1}->q_k``."""
        out, prev = [], 0
        for t, s in enumerate(self.states):
            if s == NOT_READ:
                continue
            if s > prev:
                out.append(t)
            prev = s
        return out

    def self_loops(self) -> list[list[int]]:
        """``loops[i]``: positions of the self-loop tokens read in state ``q_i`` (``i = 0..k``);
        ``loops[0]`` (weight 1, before the first transition) is never "consumed"."""
        loops: list[list[int]] = [[] for _ in range(self.end_state + 1)]
        prev = 0
        for t, s in enumerate(self.states):
            if s == NOT_READ:
                continue
            if s == prev:
                loops[s].append(t)
            prev = s
        return loops

    def consumed(self) -> list[int]:
        """Positions the path consumed: its transitions and its self-loops in ``q_1..q_k``."""
        return [t for t, s in enumerate(self.states) if s not in (0, NOT_READ)]


def path_score(u: Tensor, f: Tensor, states: tuple[int, ...]) -> float:
    """Product of the weights along a path of one WFSA. ``u, f``: ``[T, n]`` (its states)."""
    score, prev = 1.0, 0
    for t, s in enumerate(states):
        if s == NOT_READ:
            continue
        if s > prev:
            score *= float(u[t, s - 1])
        elif s > 0:
            score *= float(f[t, s - 1])
        prev = s
    return score


def wfsa_slices(is_first: Tensor) -> list[tuple[int, int]]:
    """``(start, n)`` of each WFSA in the flat state layout."""
    starts = torch.nonzero(is_first).flatten().tolist()
    ends = starts[1:] + [int(is_first.numel())]
    return [(s, e - s) for s, e in zip(starts, ends)]


def _backtrack(
    hi: np.ndarray, lo: np.ndarray, u: np.ndarray, f: np.ndarray, mask: np.ndarray,
    start: int, n: int, kind: str,
) -> tuple[float, tuple[int, ...]]:
    """Follow the backpointers of one WFSA in one document.

    ``hi, lo``: ``[T, N]`` the interval history ``c(1)..c(T)`` of the document;
    ``u, f``: ``[T, N]``; ``mask``: ``[T]``. Returns (value at the end, states per token).
    """
    T = hi.shape[0]
    states = [NOT_READ] * T
    end = T - 1
    while end >= 0 and not mask[end]:
        end -= 1
    if end < 0:
        return float("nan"), tuple(states)
    block = hi[end, start : start + n] if kind == "best" else lo[end, start : start + n]
    i = int(np.argmax(block) if kind == "best" else np.argmin(block)) + 1  # local state 1..n
    value = float(block[i - 1])
    bound = 0 if kind == "best" else 1  # which end of the interval we follow: 0 hi, 1 lo
    one = np.ones((), dtype=hi.dtype)[()]
    for t in range(end, -1, -1):
        if not mask[t]:
            continue  # padding: the state is carried over, no token is read
        if i == 0:
            states[t] = 0  # the rest of the prefix loops in q_0
            continue
        s = start + i - 1
        cands: list[tuple[float, int, int]] = []  # (value, previous state, previous bound)
        # previous real position (the value carried into t)
        tp = t - 1
        while tp >= 0 and not mask[tp]:
            tp -= 1

        for prev, w in ((i, f[t, s]), (i - 1, u[t, s])):
            if prev == 0:
                h = l = one  # q_0: the semiring's one at every time
            elif tp < 0:
                continue  # zero: no path reaches q_prev before the first token
            else:
                h, l = hi[tp, start + prev - 1], lo[tp, start + prev - 1]
                if h < l:
                    continue  # the empty interval (semiring zero)
            cands.append((w * h, prev, 0))  # same dtype and rounding as the DP's products
            cands.append((w * l, prev, 1))
        vals = np.array([c[0] for c in cands])
        k = int(np.argmax(vals) if bound == 0 else np.argmin(vals))
        states[t] = i
        _, i, bound = cands[k]
    return value, tuple(states)


def decode_paths(
    u: Tensor,
    f: Tensor,
    is_first: Tensor,
    mask: Tensor | None = None,
    requests: Iterable[tuple[int, int, str]] | None = None,
) -> dict[tuple[int, int, str], WFSAPath]:
    """Best (max-times) and/or worst (min-times) path of WFSAs in a padded batch.

    ``u, f``: ``[T, B, N]`` transition weights (:func:`transition_weights`); ``is_first``:
    ``[N]``; ``mask``: ``[T, B]`` bool (True at real tokens) or None; ``requests``: the
    ``(b, j, kind)`` to decode (document ``b``, WFSA ``j``, ``"best"`` or ``"worst"``), by
    default all. Returns ``{(b, j, kind): WFSAPath}``. The path's score equals
    ``max_i c_ji(T)`` (best) or ``min_i c_ji(T)`` (worst) of the max-/min-times DP.

    The max-times and min-times DPs are one computation (both carry the interval ``(hi,
    lo)``; they differ only in the value they report), so this runs
    :func:`semiring_dp` once, with :data:`MAX_TIMES`, and reads ``lo`` for the worst path.
    """
    semiring: MaxMinTimes = MAX_TIMES
    T, B, N = u.shape
    if mask is None:
        mask = torch.ones(T, B, dtype=torch.bool, device=u.device)
    _, history = semiring_dp(u, f, is_first, mask, semiring, return_all=True)
    hi = torch.stack([c[0] for c in history]).cpu().numpy()  # [T, B, N]
    lo = torch.stack([c[1] for c in history]).cpu().numpy()
    un, fn, mn = u.detach().cpu().numpy(), f.detach().cpu().numpy(), mask.cpu().numpy()
    slices = wfsa_slices(is_first.cpu())
    if requests is None:
        requests = [(b, j, k) for b in range(B) for j in range(len(slices)) for k in ("best", "worst")]
    out: dict[tuple[int, int, str], WFSAPath] = {}
    for b, j, kind in requests:
        if kind not in ("best", "worst"):
            raise ValueError(f"kind must be 'best' or 'worst', got {kind!r}")
        start, n = slices[j]
        value, states = _backtrack(hi[:, b], lo[:, b], un[:, b], fn[:, b], mn[:, b], start, n, kind)
        out[(b, j, kind)] = WFSAPath(j, kind, value, states)
    return out


@torch.no_grad()
def max_min_scores(u: Tensor, f: Tensor, is_first: Tensor, owner: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best and worst path score of each WFSA at each document's end, both ``[B, d]``.

    ``best[b, j] = max_i hi_ji(T)``, ``worst[b, j] = min_i lo_ji(T)`` over the final states
    ``q_1..q_{n_j}`` of the interval DP (no history kept: cheap on large batches).
    """
    hi, lo = semiring_dp(u, f, is_first, mask, MAX_TIMES)
    B, d = hi.shape[0], int(owner.max()) + 1 if owner.numel() else 0
    idx = owner.expand(B, -1)
    best = hi.new_full((B, d), -torch.inf).scatter_reduce(1, idx, MAX_TIMES.value((hi, lo)), "amax")
    worst = lo.new_full((B, d), torch.inf).scatter_reduce(1, idx, MIN_TIMES.value((hi, lo)), "amin")
    return best, worst


__all__ = [
    "NOT_READ",
    "WFSAPath",
    "decode_paths",
    "max_min_scores",
    "path_score",
    "wfsa_slices",
]

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
smallest product of its predecessor (the smallest when the last weight is negative).
:class:`PathDecoder` recomputes these four candidates from the history for every token,
state and bound at once (numpy) and keeps which one produced the stored bound (the
*backpointer*); backtracking then follows the pointers, for many paths at once.

A path reads every real token up to its end: it stays in ``q_0`` (implicit self-loop of
weight 1, nothing "consumed") until its first transition, then at each token either
advances ``q_{i-1} -> q_i`` (weight ``u_i``) or takes the self-loop of its state (weight
``f_i``). It ends in a final state ``q_1..q_{n_j}``:

* at the document's end, where a ``"final"``-readout model reads its scores (the paper's);
  the best path of WFSA ``j`` is the best over those final states (``anywhere=False``);
* or at any token ``t`` (``anywhere=True``: the best over all end positions and final
  states), the evidence of a model that pools its states over the document
  (``"mean"``/``"max"`` readouts). Tokens after the end are not read (``NOT_READ``).

Positions are indices into the sequence the model read (``<s> w_1 .. w_n </s>`` for word
vectors). For contextual vectors over word pieces, the same positions index the pieces;
map them to words with the encoder's offsets when displaying (see :mod:`.table`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from ..layout import StateLayout
from ..ops.reference import semiring_dp
from ..semiring import MAX_TIMES, MIN_TIMES, MaxMinTimes

NOT_READ = -1  # ``states[t]`` of a masked (padding) position, or after the path's end: not read
KINDS = ("best", "worst")


@dataclass(frozen=True)
class WFSAPath:
    """One path of WFSA ``wfsa`` through a document.

    ``states[t]``: the state (``0..n``) the path is in after reading token ``t``
    (``NOT_READ`` at masked positions and after the path's end). ``score``: the product of
    its transition weights.
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

    @property
    def end(self) -> int:
        """The position of the last token the path read (``-1``: none)."""
        read = [t for t, s in enumerate(self.states) if s != NOT_READ]
        return read[-1] if read else -1

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


def wfsa_slices(is_first: Any) -> list[tuple[int, int]]:
    """``(start, n)`` of each WFSA in the flat state layout (:class:`StateLayout` of the flags)."""
    return [(a, b - a) for a, b in StateLayout.from_is_first(is_first).slices]


def _backpointers(hi: np.ndarray, lo: np.ndarray, u: np.ndarray, f: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    """``[2, T, B, N]`` int8: for bound 0 (``hi``) and 1 (``lo``) of state ``s`` at token
    ``t``, which candidate produced it: ``0, 1``: the self-loop from the predecessor value's
    ``hi``, ``lo`` at ``t-1``; ``2, 3``: the main path from the previous state's ``hi``, ``lo``
    (the semiring's one for ``q_1``). Candidates from the empty interval (no path) are never
    chosen; ties go to the first candidate. At padding the history carries the states over,
    so ``t-1`` holds the value of the previous real token (only real tokens are followed)."""
    ph = np.concatenate([np.full_like(hi[:1], -np.inf), hi[:-1]])  # c_s(t-1); zero before the first token
    pl = np.concatenate([np.full_like(lo[:1], np.inf), lo[:-1]])
    qh, ql = np.roll(ph, 1, axis=-1), np.roll(pl, 1, axis=-1)  # c_{s-1}(t-1)
    qh[..., is_first] = 1  # q_0: the semiring's one at every time
    ql[..., is_first] = 1
    self_ok, main_ok = ph >= pl, qh >= ql  # hi < lo: the empty interval (semiring zero)
    with np.errstate(invalid="ignore", over="ignore"):
        cands = np.stack([f * ph, f * pl, u * qh, u * ql])  # same dtype and rounding as the DP's products
    ok = np.stack([self_ok, self_ok, main_ok, main_ok])
    up = np.where(ok, cands, -np.inf).argmax(0)
    down = np.where(ok, cands, np.inf).argmin(0)
    return np.stack([up, down]).astype(np.int8)


class PathDecoder:
    """The interval (max-/min-times) DP of a padded batch, run once, and its backpointers.

    ``u, f``: ``[T, B, N]`` transition weights; ``is_first``: ``[N]``; ``mask``: ``[T, B]``
    (True at real tokens) or None. ``hi, lo``: the history ``c(1)..c(T)`` as numpy
    ``[T, B, N]``. :meth:`select` picks where a path ends, :meth:`trace` backtracks many
    paths at once, :meth:`paths` does both.
    """

    def __init__(self, u: Tensor, f: Tensor, is_first: Tensor, mask: Tensor | None = None):
        semiring: MaxMinTimes = MAX_TIMES  # min-times is the same DP: it reports lo
        T, B, N = u.shape
        if mask is None:
            mask = torch.ones(T, B, dtype=torch.bool, device=u.device)
        if T:
            _, history = semiring_dp(u, f, is_first, mask, semiring, return_all=True)
            self.hi = torch.stack([c[0] for c in history]).detach().cpu().numpy()  # [T, B, N]
            self.lo = torch.stack([c[1] for c in history]).detach().cpu().numpy()
        else:
            self.hi = np.full((0, B, N), -np.inf)
            self.lo = np.full((0, B, N), np.inf)
        self.u, self.f = u.detach().cpu().numpy(), f.detach().cpu().numpy()
        self.mask = mask.cpu().numpy()
        self.is_first = is_first.cpu()
        self.slices = wfsa_slices(self.is_first)
        self.choice = _backpointers(self.hi, self.lo, self.u, self.f, self.is_first.numpy())
        real = self.mask.any(0)
        self.last = np.where(real, self.mask.shape[0] - 1 - np.argmax(self.mask[::-1], 0), -1)  # [B]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.hi.shape

    def select(self, j: int, kind: str, anywhere: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the best (worst) path of WFSA ``j`` ends in every document of the batch:
        ``(end position, local state 1..n, value)``, each ``[B]``: the largest ``hi`` (the
        smallest ``lo``) over the final states at the last real token, or with ``anywhere``
        over every real token (the first such token on a tie). A document without tokens
        gets end ``-1`` and value NaN."""
        if kind not in KINDS:
            raise ValueError(f"kind must be 'best' or 'worst', got {kind!r}")
        start, n = self.slices[j]
        T, B, _ = self.hi.shape
        block = (self.hi if kind == "best" else self.lo)[:, :, start : start + n]  # [T, B, n]
        fill = -np.inf if kind == "best" else np.inf
        pick = np.argmax if kind == "best" else np.argmin
        rows = np.arange(B)
        if anywhere:
            flat = np.where(self.mask[:, :, None], block, fill).transpose(1, 0, 2).reshape(B, T * n)
            k = pick(flat, axis=1) if T else np.zeros(B, dtype=np.int64)
            end, state = k // n, k % n + 1
        else:
            end = np.maximum(self.last, 0)
            state = pick(block[end, rows], axis=1) + 1 if T else np.ones(B, dtype=np.int64)
        value = block[end, rows, state - 1].astype(np.float64) if T else np.full(B, np.nan)
        empty = self.last < 0
        end = np.where(empty, -1, end)
        value = np.where(empty, np.nan, value)
        return end, state, value

    def trace(
        self,
        b: Sequence[int] | np.ndarray,
        j: Sequence[int] | np.ndarray,
        kind: Sequence[str] | np.ndarray,
        end: Sequence[int] | np.ndarray,
        state: Sequence[int] | np.ndarray,
    ) -> np.ndarray:
        """Backtrack ``R`` paths at once: path ``r`` of WFSA ``j[r]`` in document ``b[r]``,
        ending at token ``end[r]`` in local state ``state[r]`` (``1..n``) on its ``hi``
        (``kind`` "best") or ``lo`` ("worst"). Returns its states ``[R, T]`` (``NOT_READ``
        at padding and after ``end``)."""
        doc = np.asarray(b, dtype=np.int64)
        last = np.asarray(end, dtype=np.int64)
        i = np.asarray(state, dtype=np.int64).copy()
        start = np.array([self.slices[int(k)][0] for k in j], dtype=np.int64)
        bound = np.array([KINDS.index(str(k)) for k in kind], dtype=np.int64)
        T = self.hi.shape[0]
        out = np.full((len(doc), T), NOT_READ, dtype=np.int16)
        top = int(last.max()) if len(last) else -1
        for t in range(top, -1, -1):
            act = (last >= t) & self.mask[t, doc]
            if not act.any():
                continue
            out[act, t] = i[act]
            mv = np.flatnonzero(act & (i > 0))
            if mv.size:
                k = self.choice[bound[mv], t, doc[mv], start[mv] + i[mv] - 1]
                i[mv] -= k >= 2
                bound[mv] = k & 1
        return out

    def paths(
        self, requests: Iterable[tuple[int, int, str]], anywhere: bool = False
    ) -> dict[tuple[int, int, str], WFSAPath]:
        """``{(b, j, kind): WFSAPath}``: the best / worst path of WFSA ``j`` in document ``b``
        (ending at the document's end, or with ``anywhere`` at any token)."""
        requests = list(requests)
        for _, _, kind in requests:
            if kind not in KINDS:
                raise ValueError(f"kind must be 'best' or 'worst', got {kind!r}")
        where = {(j, kind): self.select(j, kind, anywhere) for j, kind in {(j, k) for _, j, k in requests}}
        ends = [int(where[(j, k)][0][b]) for b, j, k in requests]
        states = [int(where[(j, k)][1][b]) for b, j, k in requests]
        traced = self.trace([r[0] for r in requests], [r[1] for r in requests], [r[2] for r in requests], ends, states)
        out = {}
        for r, (b, j, kind) in enumerate(requests):
            value = float(where[(j, kind)][2][b])
            out[(b, j, kind)] = WFSAPath(j, kind, value, tuple(int(s) for s in traced[r]))
        return out


def decode_paths(
    u: Tensor,
    f: Tensor,
    is_first: Tensor,
    mask: Tensor | None = None,
    requests: Iterable[tuple[int, int, str]] | None = None,
    anywhere: bool = False,
) -> dict[tuple[int, int, str], WFSAPath]:
    """Best (max-times) and/or worst (min-times) path of WFSAs in a padded batch.

    ``u, f``: ``[T, B, N]`` transition weights (:func:`transition_weights`); ``is_first``:
    ``[N]``; ``mask``: ``[T, B]`` bool (True at real tokens) or None; ``requests``: the
    ``(b, j, kind)`` to decode (document ``b``, WFSA ``j``, ``"best"`` or ``"worst"``), by
    default all. Returns ``{(b, j, kind): WFSAPath}``. The path's score equals
    ``max_i c_ji(T)`` (best) or ``min_i c_ji(T)`` (worst) of the max-/min-times DP; with
    ``anywhere``, ``max_t max_i c_ji(t)`` (``min_t min_i``) over the real tokens ``t``: the
    best span ending anywhere in the document.

    The max-times and min-times DPs are one computation (both carry the interval ``(hi,
    lo)``; they differ only in the value they report), so this runs
    :func:`semiring_dp` once, with :data:`MAX_TIMES`, and reads ``lo`` for the worst path.
    """
    decoder = PathDecoder(u, f, is_first, mask)
    B = u.shape[1]
    if requests is None:
        requests = [(b, j, k) for b in range(B) for j in range(len(decoder.slices)) for k in KINDS]
    return decoder.paths(requests, anywhere)


@torch.no_grad()
def max_min_scores(
    u: Tensor, f: Tensor, is_first: Tensor, owner: Tensor, mask: Tensor | None = None, anywhere: bool = False
) -> tuple[Tensor, Tensor]:
    """Best and worst path score of each WFSA at each document's end, both ``[B, d]``.

    ``best[b, j] = max_i hi_ji(T)``, ``worst[b, j] = min_i lo_ji(T)`` over the final states
    ``q_1..q_{n_j}`` of the interval DP (no history kept: cheap on large batches). With
    ``anywhere``: ``max_t max_i hi_ji(t)`` and ``min_t min_i lo_ji(t)`` over the real tokens
    (the history is kept).
    """
    if anywhere:
        T, B, N = u.shape
        if T:
            _, history = semiring_dp(u, f, is_first, mask, MAX_TIMES, return_all=True)
            his, los = torch.stack([c[0] for c in history]), torch.stack([c[1] for c in history])
            if mask is not None:
                his = his.masked_fill(~mask[:, :, None], -torch.inf)
                los = los.masked_fill(~mask[:, :, None], torch.inf)
            hi, lo = his.amax(0), los.amin(0)
        else:
            hi, lo = u.new_full((B, N), -torch.inf), u.new_full((B, N), torch.inf)
    else:
        end = cast(tuple[Tensor, Tensor], semiring_dp(u, f, is_first, mask, MAX_TIMES))
        hi, lo = end
    B, d = hi.shape[0], int(owner.max()) + 1 if owner.numel() else 0
    idx = owner.expand(B, -1)
    best = hi.new_full((B, d), -torch.inf).scatter_reduce(1, idx, MAX_TIMES.value((hi, lo)), "amax")
    worst = lo.new_full((B, d), torch.inf).scatter_reduce(1, idx, MIN_TIMES.value((hi, lo)), "amin")
    return best, worst


__all__ = [
    "KINDS",
    "NOT_READ",
    "PathDecoder",
    "WFSAPath",
    "decode_paths",
    "max_min_scores",
    "path_score",
    "wfsa_slices",
]

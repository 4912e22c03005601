"""Cutting a document's word pieces into the segments the encoder reads one at a time."""

from __future__ import annotations

import numpy as np

SENTENCE_END = set(".!?\u2026")


def segment_pieces(text: str, offsets: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Cut pieces ``0..n`` into segments of at most ``budget`` pieces: whole sentences packed
    greedily, a longer sentence cut at a word start (a piece after a space), else anywhere.
    An empty document is one empty segment."""
    n = len(offsets)
    if n == 0:
        return [(0, 0)]
    starts, ends = offsets[:, 0], offsets[:, 1]
    sentences, a = [], 0
    for i in range(n):
        gap = text[ends[i] : starts[i + 1]] if i + 1 < n else " "
        piece = text[starts[i] : ends[i]]
        if i + 1 == n or "\n" in gap or (gap and piece and set(piece) <= SENTENCE_END):
            sentences.append((a, i + 1))
            a = i + 1
    segments: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for a, b in sentences:
        if cur is not None and b - cur[0] <= budget:
            cur = (cur[0], b)
            continue
        if cur is not None:
            segments.append(cur)
        while b - a > budget:  # a sentence longer than a segment
            cut = max((j for j in range(a + 1, a + budget + 1) if starts[j] > ends[j - 1]), default=a + budget)
            segments.append((a, cut))
            a = cut
        cur = (a, b)
    assert cur is not None  # n > 0, so there is at least one sentence
    segments.append(cur)
    return segments

"""Stratified, deterministic splitting (copies of a text stay on one side)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparse_rational.data.reading import Example


def _allocate(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over the classes in proportion to ``counts`` (largest remainder)."""
    size = sum(counts.values())
    share = {label: total * n // size for label, n in counts.items()}
    remainder = {label: total * n % size for label, n in counts.items()}
    left = total - sum(share.values())
    for label in sorted(counts, key=lambda label: (-remainder[label], label))[:left]:
        share[label] += 1
    return share


def _carve(examples: list[Example], sizes: Sequence[int], seed: int) -> list[list[Example]]:
    """``[rest, part_1, ..., part_k]`` with ``len(part_i) == sizes[i]``, each stratified by
    label, deterministic in ``seed``.

    Per class (labels in sorted order), ``default_rng(seed).permutation`` orders the
    members, which then fill part_1, part_2, ... in turn; the rest is ``rest``. Copies of
    the same text are kept together (both benchmarks hold exact duplicate reviews, and a
    copy in train and one in test would leak): such a group moves as one unit and is
    passed over by a part it would overfill. Every part is finally shuffled by the same
    generator.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    counts = {label: len(members) for label, members in by_label.items()}
    shares = [_allocate(counts, size) for size in sizes]
    parts: list[list[Example]] = [[] for _ in range(len(sizes) + 1)]
    for label in sorted(by_label):
        groups: dict[str, list[Example]] = {}
        for example in by_label[label]:
            groups.setdefault(example.text, []).append(example)
        units = list(groups.values())
        room = [share[label] for share in shares]
        for i in rng.permutation(len(units)):
            unit = units[i]
            for k, free in enumerate(room):
                if len(unit) <= free:
                    parts[k + 1].extend(unit)
                    room[k] -= len(unit)
                    break
            else:
                parts[0].extend(unit)
    return [[part[i] for i in rng.permutation(len(part))] for part in parts]

"""Contrast pairs: labelled training texts that teach what follows "but" (``--contrast-pairs K``).

A review that turns ("looks great, but it stopped working after two days") is labelled by
what comes after the turn. A bag of words, and a rational model with a mean readout that
has never seen the turn matter, weighs both halves alike. For every training text ``e``
of label ``y`` this module makes ``K`` (on average: ``K`` may be a fraction) texts "S1, but S2" labelled ``y``: ``S2`` a
sentence of ``e``, ``S1`` a sentence of another training text of another label, both drawn
with a ``random.Random`` seeded by ``seed``; so every label ends as many pairs as it has
texts, and "but" itself predicts nothing. The sentences are real review sentences (at
most ``MAX_WORDS`` words; a longer one is cut at a word), not templates; the labels come
from the reviews, with their noise (a sentence of a positive review need not be positive).

Standard library only.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from .reading import Example

MAX_WORDS = 30  # a sentence of a pair: long enough for a clause, short enough to be one
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ?), each cut to ``MAX_WORDS`` words,
    without their final punctuation; empty ones left out."""
    out = []
    for part in _SENTENCE_END.split(text.strip()):
        words = part.split()[:MAX_WORDS]
        sentence = " ".join(words).rstrip(".!?;:, ")
        if sentence:
            out.append(sentence)
    return out


def contrast_pairs(examples: Sequence[Example], copies: float, seed: int = 0) -> list[Example]:
    """``copies`` contrast pairs per example (see the module doc): every example ends
    ``int(copies)`` pairs, and a random ``copies - int(copies)`` share of them (drawn with the
    same generator) one more, so ``0.25`` adds a pair for a quarter of the texts. None when
    fewer than two labels have sentences."""
    if copies <= 0:
        return []
    rng = random.Random(f"contrast-pairs:{seed}")
    by_label: dict[str, list[list[str]]] = {}
    for ex in examples:
        found = sentences(ex.text)
        if found:
            by_label.setdefault(ex.label, []).append(found)
    labels = sorted(by_label, key=str)
    if len(labels) < 2:
        return []
    whole, part = int(copies), copies - int(copies)
    extra = set(rng.sample(range(len(examples)), round(part * len(examples)))) if part > 0 else set()
    out = []
    for k, ex in enumerate(examples):
        own = sentences(ex.text)
        others = [lab for lab in labels if lab != ex.label]
        if not own or not others:
            continue
        for _ in range(whole + (k in extra)):
            opening = rng.choice(rng.choice(by_label[rng.choice(others)]))
            ending = rng.choice(own)
            out.append(Example(f"{opening}, but {ending[:1].lower()}{ending[1:]}", ex.label))
    return out


__all__ = ["MAX_WORDS", "contrast_pairs", "sentences"]

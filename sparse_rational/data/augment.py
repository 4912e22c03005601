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

import math
import random
import re
from collections import Counter
from collections.abc import Sequence

from .reading import Example

NEGATION_THRESHOLD = 0.7  # |log-count ratio| of a word that carries a label (2x more frequent in its documents)
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


# --------------------------------------------------------------------------- negation pairs

#: negators removed to flip a sentence; a contraction is replaced by its auxiliary
_NEGATORS = frozenset({"not", "never", "no"})
_CONTRACTED = {
    "don't": "do",
    "doesn't": "does",
    "didn't": "did",
    "isn't": "is",
    "aren't": "are",
    "wasn't": "was",
    "weren't": "were",
    "won't": "will",
    "wouldn't": "would",
    "can't": "can",
    "cannot": "can",
    "couldn't": "could",
    "shouldn't": "should",
    "haven't": "have",
    "hasn't": "has",
    "hadn't": "had",
}
#: auxiliaries a "not" goes after; "have"/"has"/"had" as a main verb take a "never" before
_AUXILIARIES = frozenset(
    {"is", "are", "was", "were", "am", "will", "would", "can", "could", "should", "does", "do", "did", "must"}
)
_HAVE = frozenset({"have", "has", "had"})
_PARTICIPLES = frozenset(
    {
        "been",
        "had",
        "got",
        "gotten",
        "made",
        "bought",
        "done",
        "gone",
        "seen",
        "kept",
        "put",
        "read",
        "found",
        "lost",
        "broken",
        "given",
        "taken",
        "owned",
        "used",
        "tried",
    }
)
SCOPE = 4  # a polar word at most this many words after the negator or the auxiliary
_STRIP = ".,!?;:\"'()[]"


def _bare(word: str) -> str:
    return word.lower().replace("\u2019", "'").strip(_STRIP)


def polarity(examples: Sequence[Example], min_count: int = 5) -> tuple[dict[str, float], list[str]]:
    """Each word's log-count ratio between the two labels (Wang and Manning 2012) over the
    documents of ``examples``, for words in at least ``min_count`` of them: positive when the
    word is more frequent in the first label's documents; and the two labels, sorted."""
    labels = sorted({ex.label for ex in examples}, key=str)
    if len(labels) != 2:
        raise ValueError(f"negation pairs need two classes, not {len(labels)}")
    counts: dict[str, Counter[str]] = {lab: Counter() for lab in labels}
    sizes = Counter(ex.label for ex in examples)
    for ex in examples:
        counts[ex.label].update({_bare(w) for w in ex.text.split()})
    first, second = labels
    ratio = {}
    for word in counts[first].keys() | counts[second].keys():
        a, b = counts[first][word], counts[second][word]
        if word and a + b >= min_count:
            ratio[word] = math.log((a + 1) / (sizes[first] + 1)) - math.log((b + 1) / (sizes[second] + 1))
    return ratio, labels


def negate(sentence: str, ratio: dict[str, float], sign: int, threshold: float) -> str | None:
    """``sentence`` with its meaning turned, or None when no rule applies: its first negator
    removed (a contraction replaced by its auxiliary) when a word of polarity against
    ``sign`` follows within ``SCOPE`` words (the negated word: "it is not good" in a negative
    review); else, when the sentence's summed polarity leans to ``sign``, "not" put after its
    first auxiliary, or "never" before a main-verb have/has/had, that a word of polarity
    ``sign`` follows within ``SCOPE`` words ("the lid is flimsy" in a negative review).
    Polar: ``|ratio| >= threshold``."""
    words = sentence.split()
    bare = [_bare(w) for w in words]

    def polar(start: int, want: int) -> bool:
        return any(ratio.get(w, 0.0) * want >= threshold for w in bare[start + 1 : start + 1 + SCOPE])

    for i, w in enumerate(bare):
        if w in _NEGATORS or w in _CONTRACTED:
            if not polar(i, -sign):
                return None
            if w in _CONTRACTED:
                return " ".join([*words[:i], _CONTRACTED[w], *words[i + 1 :]])
            rest = words[:i] + words[i + 1 :]
            return " ".join(rest) if rest else None
    if sign * sum(ratio.get(w, 0.0) for w in bare) < threshold:  # the sentence as a whole leans the other way
        return None
    for i, w in enumerate(bare):
        if words[i][-1] in _STRIP or i + 1 == len(bare) or (i == 0 and w == "do"):  # "is,", "Do yourself a favor"
            continue
        if w in _AUXILIARIES and polar(i, sign):
            return " ".join([*words[: i + 1], "not", *words[i + 1 :]])
        main_verb = bare[i + 1] not in _PARTICIPLES and bare[i + 1] != "to" and not bare[i + 1].endswith("ed")
        if w in _HAVE and main_verb and polar(i, sign):
            return " ".join([*words[:i], "never", *words[i:]])
    return None


def negation_pairs(
    examples: Sequence[Example], copies: float, seed: int = 0, threshold: float = NEGATION_THRESHOLD
) -> list[Example]:
    """``copies`` negation pairs per example (on average, as :func:`contrast_pairs`): a
    sentence of the example that :func:`negate` can turn, labelled as the example, and its
    turned copy labelled with the other class. Two classes only (ValueError otherwise); the
    word polarities come from ``examples`` themselves."""
    if copies <= 0:
        return []
    ratio, (first, second) = polarity(examples)
    other = {first: second, second: first}
    rng = random.Random(f"negation-pairs:{seed}")
    whole, part = int(copies), copies - int(copies)
    extra = set(rng.sample(range(len(examples)), round(part * len(examples)))) if part > 0 else set()
    out = []
    for k, ex in enumerate(examples):
        count = whole + (k in extra)
        if not count:
            continue
        sign = 1 if ex.label == first else -1
        turned = [(s, t) for s in sentences(ex.text) if (t := negate(s, ratio, sign, threshold)) is not None]
        for s, t in rng.sample(turned, min(count, len(turned))):
            out.append(Example(s, ex.label))
            out.append(Example(t, other[ex.label]))
    return out


__all__ = ["MAX_WORDS", "contrast_pairs", "negate", "negation_pairs", "polarity", "sentences"]

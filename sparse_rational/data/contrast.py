"""A CheckList-style negation and contrast test set for binary sentiment.

Ribeiro et al. (ACL 2020, "Beyond Accuracy: Behavioral Testing of NLP Models with
CheckList") test a sentiment model with short sentences generated from templates, each
probing one capability. This module builds such a set for the two phenomena a bag of
words gets wrong and a rational RNN should get right:

* ``negated_positive``: a positive phrase under negation, hence negative
  ("this kettle is not worth the money", "I can't say I like this novel");
* ``negated_negative``: a negative phrase under negation, hence positive
  ("not bad at all", "I have never had a problem with this charger");
* ``contrast_negative``: a positive opening, then "but" / "however" and a negative ending,
  hence negative ("I wanted to love this blender, but it broke after a week");
* ``contrast_positive``: a negative opening, then a positive ending, hence positive
  ("the box was damaged, but the pan works perfectly");
* ``plain_positive`` / ``plain_negative``: controls with neither negation nor contrast, so
  that a model which answers "negative" whenever it sees "not" or "but" cannot score well.

How it is built: every family is a list of named templates, filled with the product nouns
of one Amazon domain (kitchen, books, dvd, electronics; or a generic vocabulary) and, for
the contrast families, with the domain's phrases for something going right or wrong. The
labels ("positive" / "negative") are given by construction: a template's family fixes the
label of every sentence it generates, no model or annotator is involved. Negation words
appear only in the negation families, contrast words only in the contrast families.

Exact duplicates are removed. ``contrast_set`` then draws, with a ``random.Random(seed)``,
the same number of sentences from each family of a mirrored pair (negated positive /
negated negative, contrast to negative / contrast to positive, plain positive / plain
negative), visiting the templates of a family in turn so that every template is used
before any is used twice; the two classes are therefore exactly balanced. By default
there are 400 sentences per domain: 80 per negation and contrast family, 40 per control.
The same domain, seed and size give the same list.

Standard library only (no torch): ``score`` takes the predictions as strings, and
``label_map`` maps "positive" / "negative" to a model's own class names.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

__all__ = [
    "DEFAULT_SIZE",
    "DOMAINS",
    "FAMILIES",
    "LABELS",
    "NAMED_SENTIMENT",
    "ContrastExample",
    "contrast_set",
    "label_map",
    "resolve_domain",
    "score",
]

POSITIVE = "positive"
NEGATIVE = "negative"
LABELS = (POSITIVE, NEGATIVE)
#: class names (positive, negative), any case, that say a binary task is sentiment ("1"/"0"
#: too in :func:`label_map`, where the caller says the model is one)
NAMED_SENTIMENT = ((POSITIVE, NEGATIVE), ("pos", "neg"))

DOMAINS = ("kitchen", "books", "dvd", "electronics")
GENERIC = "generic"

#: family name -> the label of every sentence in it
FAMILY_LABELS: dict[str, str] = {
    "negated_positive": NEGATIVE,
    "negated_negative": POSITIVE,
    "contrast_negative": NEGATIVE,
    "contrast_positive": POSITIVE,
    "plain_positive": POSITIVE,
    "plain_negative": NEGATIVE,
}
FAMILIES = tuple(FAMILY_LABELS)

#: mirrored pairs (positive family, negative family), each drawn in equal numbers, and the
#: weight of each pair in the set: 2 : 2 : 1
_PAIRS: tuple[tuple[str, str, int], ...] = (
    ("negated_negative", "negated_positive", 2),
    ("contrast_positive", "contrast_negative", 2),
    ("plain_positive", "plain_negative", 1),
)

DEFAULT_SIZE = 400


@dataclass(frozen=True)
class ContrastExample:
    """One test sentence, its label by construction ("positive" / "negative") and the
    template family that produced it."""

    text: str
    label: str
    family: str


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Noun:
    word: str
    plural: bool = False
    powered: bool = False  # an appliance: it can "stop working"

    def fields(self) -> dict[str, str]:
        """What a template may say about this noun, in agreement with its number."""
        if self.plural:
            return {
                "thing": self.word,
                "this": "these",
                "is": "are",
                "was": "were",
                "has": "have",
                "does": "do",
                "s": "",
                "it": "they",
                "them": "them",
            }
        return {
            "thing": self.word,
            "this": "this",
            "is": "is",
            "was": "was",
            "has": "has",
            "does": "does",
            "s": "s",
            "it": "it",
            "them": "it",
        }


def _nouns(*words: str) -> tuple[_Noun, ...]:
    """Nouns; a trailing "+" marks a plural ("headphones+"), a trailing "*" an appliance
    ("toaster*")."""
    out = []
    for word in words:
        name = word.rstrip("+*")
        out.append(_Noun(name, plural="+" in word[len(name) :], powered="*" in word[len(name) :]))
    return tuple(out)


@dataclass(frozen=True)
class _Vocabulary:
    """The words of one domain.

    ``nouns``: what the reviews are about. ``used``: the verb in "the best ... I have ever
    {used}". In the phrase lists, ``{subj}`` is the subject the phrase is said of ("it",
    "they", "the pan"); the number fields of ``_Noun.fields`` agree with it.
    ``good_openings`` / ``bad_openings`` start a contrast sentence; ``good_endings`` /
    ``bad_endings`` end one (and make plain sentences with "the {thing}" as subject).
    ``powered_only``: the phrases said only of appliances (a knife does not "stop working");
    every noun is one when the field is empty.
    """

    nouns: tuple[_Noun, ...]
    used: str
    good_openings: tuple[str, ...]
    bad_openings: tuple[str, ...]
    good_endings: tuple[str, ...]
    bad_endings: tuple[str, ...]
    powered_only: frozenset[str] = frozenset()

    def fits(self, phrase: str, noun: _Noun) -> bool:
        return noun.powered or not self.powered_only or phrase not in self.powered_only


# Openings and endings shared by every domain (they are about buying, not the product).
_COMMON_GOOD_OPENINGS = (
    "I wanted to love {this} {thing}",
    "{this} {thing} look{s} great",
    "{this} {thing} had great reviews",
    "the price was great",
    "I was excited when {this} {thing} arrived",
)
_COMMON_BAD_OPENINGS = (
    "the box was damaged",
    "it took a while to arrive",
    "I was skeptical at first",
    "the price seemed high at first",
    "shipping was slow",
)
_COMMON_GOOD_ENDINGS = (
    "{subj} {is} great",
    "I love {them}",
    "{subj} turned out to be excellent",
    "{subj} {is} worth every penny",
)
_COMMON_BAD_ENDINGS = (
    "{subj} ended up being a huge disappointment",
    "{subj} turned out to be a waste of money",
)

_VOCABULARIES: dict[str, _Vocabulary] = {
    "kitchen": _Vocabulary(
        nouns=_nouns(
            "pan",
            "kettle*",
            "blender*",
            "knife",
            "toaster*",
            "coffee maker*",
            "skillet",
            "mixer*",
            "can opener",
            "food processor*",
            "cutting board",
        ),
        used="owned",
        good_openings=("the design is beautiful", "{subj} worked well at first"),
        bad_openings=("the instructions were confusing", "{this} {thing} look{s} a bit cheap"),
        good_endings=(
            "{subj} work{s} perfectly",
            "{subj} {does} the job beautifully",
            "I use {them} every day and love {them}",
            "{subj} {is} sturdy and easy to clean",
        ),
        bad_endings=(
            "{subj} stopped working after two days",
            "{subj} broke after a week",
            "{subj} fell apart within a month",
            "{subj} broke the first time I used {them}",
            "I had to return {them} after a week",
            "{subj} {is} flimsy and hard to clean",
        ),
        powered_only=frozenset({"{subj} stopped working after two days"}),
    ),
    "books": _Vocabulary(
        nouns=_nouns(
            "book",
            "novel",
            "story",
            "memoir",
            "biography",
            "thriller",
            "mystery",
            "cookbook",
            "sequel",
            "textbook",
        ),
        used="read",
        good_openings=("the first chapters are gripping", "the author writes beautifully"),
        bad_openings=("the first chapter is slow", "the cover is plain"),
        good_endings=(
            "{subj} turned out to be a wonderful read",
            "the ending is beautiful",
            "I loved every page",
            "{subj} {is} now one of my favorites",
        ),
        bad_endings=(
            "{subj} fell apart in the last chapters",
            "the plot went nowhere",
            "the ending was a huge letdown",
            "the last hundred pages were a chore",
            "the characters were flat and dull",
            "{subj} quickly became boring",
        ),
    ),
    "dvd": _Vocabulary(
        nouns=_nouns(
            "movie",
            "film",
            "dvd",
            "series",
            "documentary",
            "box set",
            "season",
            "show",
            "comedy",
            "sequel",
        ),
        used="seen",
        good_openings=("the cast is impressive", "the first half is gripping"),
        bad_openings=("the opening scenes are slow", "the dvd menu is clunky"),
        good_endings=(
            "the acting is superb",
            "{subj} turned out to be a great watch",
            "I loved every minute",
            "the second half is brilliant",
        ),
        bad_endings=(
            "the second half dragged",
            "the plot fell apart",
            "the acting was wooden",
            "the ending was a huge letdown",
            "{subj} quickly became boring",
            "I turned {them} off halfway through",
        ),
    ),
    "electronics": _Vocabulary(
        nouns=_nouns(
            "headphones+",
            "cable",
            "charger",
            "camera",
            "speaker",
            "mouse",
            "keyboard",
            "remote",
            "router",
            "earbuds+",
            "tablet",
            "radio",
        ),
        used="owned",
        good_openings=("setup was quick and easy", "{subj} worked well at first"),
        bad_openings=("the instructions were confusing", "setup took a while"),
        good_endings=(
            "{subj} work{s} perfectly",
            "{subj} {has} worked flawlessly for months",
            "I use {them} every day and love {them}",
            "the quality is excellent",
        ),
        bad_endings=(
            "{subj} stopped working after two days",
            "{subj} broke after a week",
            "{subj} died within a month",
            "{subj} keep{s} disconnecting",
            "I had to return {them} after a week",
            "{subj} overheated after an hour",
        ),
    ),
    GENERIC: _Vocabulary(
        nouns=_nouns(
            "product",
            "item",
            "thing",
            "gadget",
            "unit",
            "model",
            "set",
            "gift",
            "device",
            "tool",
        ),
        used="bought",
        good_openings=("the packaging is lovely", "{subj} worked well at first"),
        bad_openings=("the instructions were confusing", "the color is a bit dull"),
        good_endings=(
            "{subj} work{s} perfectly",
            "the quality is excellent",
            "I use {them} every day and love {them}",
            "{subj} exceeded my expectations",
        ),
        bad_endings=(
            "{subj} stopped working after two days",
            "{subj} broke after a week",
            "{subj} fell apart within a month",
            "I had to return {them} after a week",
            "the quality is terrible",
            "{subj} {is} cheaply made",
        ),
    ),
}

#: accepted domain names (after an optional "hatn:", "amazon:" or "fdu:" prefix) -> domain
_ALIASES = {
    "kitchen": "kitchen",
    "kitchen_housewares": "kitchen",
    "kitchen_&_housewares": "kitchen",
    "books": "books",
    "book": "books",
    "dvd": "dvd",
    "video": "dvd",  # FDU-MTL's movie-review domains read as the dvd domain
    "imdb": "dvd",
    "mr": "dvd",
    "electronics": "electronics",
    GENERIC: GENERIC,
}


def resolve_domain(domain: str) -> str:
    """The vocabulary ``contrast_set`` uses for ``domain``: "kitchen", "books", "dvd",
    "electronics" or "generic". A benchmark prefix ("hatn:", "amazon:", "fdu:", ...) is
    dropped and case is ignored; FDU-MTL's "kitchen_housewares" is the kitchen domain;
    every other name (the other FDU-MTL domains, a file of the user's) gets "generic"."""
    name = str(domain).strip().lower()
    if ":" in name:
        name = name.split(":", 1)[1]
    return _ALIASES.get(name.strip(), GENERIC)


# --------------------------------------------------------------------------- templates

# A template is one format string; it may use the noun's fields ({this} {thing} {is} ...),
# and the contrast templates also {opening} and {ending}. Its name is for reading only.

_NEGATED_POSITIVE = (
    ("not_good", "{this} {thing} {is} not good"),
    ("not_great", "{this} {thing} {is} not great"),
    ("not_good_at_all_thing", "{this} {thing} {is} not good at all"),
    ("not_good_at_all", "not good at all"),
    ("not_worth_money", "the {thing} {is} not worth the money"),
    ("not_worth_money_short", "not worth the money"),
    ("would_not_recommend", "I would not recommend {this} {thing}"),
    ("do_not_like", "I do not like {this} {thing}"),
    ("dont_like", "I don't like {this} {thing} at all"),
    ("cant_say_like", "I can't say I like {this} {thing}"),
    ("cant_say_like_short", "I can't say I like it"),
    ("not_hoped_for", "{this} {thing} {is} not what I hoped for"),
    ("not_hoped_for_short", "not what I hoped for"),
    ("not_happy", "I am not happy with {this} {thing}"),
    ("not_impressed", "I was not impressed with {this} {thing}"),
    ("never_buy_again", "I would never buy {this} {thing} again"),
    ("not_a_good", "{this} {thing} {is} not a good buy"),
    ("nothing_good", "there is nothing good about {this} {thing}"),
    ("not_fan", "I am not a fan of {this} {thing}"),
    ("no_good", "{this} {thing} {is} no good"),
)

_NEGATED_NEGATIVE = (
    ("not_bad", "{this} {thing} {is} not bad"),
    ("not_bad_at_all_thing", "{this} {thing} {is} not bad at all"),
    ("not_bad_at_all", "not bad at all"),
    ("never_problem", "never had a problem with {this} {thing}"),
    ("never_problem_i", "I have never had a problem with {this} {thing}"),
    ("no_complaints_thing", "I have no complaints about {this} {thing}"),
    ("no_complaints", "I have no complaints"),
    ("no_complaints_at_all", "no complaints at all"),
    ("never_disappoints", "{this} {thing} never disappoint{s}"),
    ("never_disappoints_short", "it never disappoints"),
    ("no_regrets", "no regrets buying {this} {thing}"),
    ("no_regrets_short", "no regrets buying it"),
    ("dont_regret", "I don't regret buying {this} {thing}"),
    ("nothing_bad", "I have nothing bad to say about {this} {thing}"),
    ("cant_find_wrong", "I can't find anything wrong with {this} {thing}"),
    ("never_let_down", "{this} {thing} never let me down"),
    ("wont_be_disappointed", "you won't be disappointed with {this} {thing}"),
    ("not_disappointed", "I was not disappointed with {this} {thing}"),
    ("not_a_bad", "{this} {thing} {is} not a bad buy at all"),
    ("not_disappointing", "{this} {thing} {is} not disappointing at all"),
)

# The same connectives for both labels: the word "but" says nothing of the label, the
# ending does.
_CONTRAST = (
    ("but", "{opening}, but {ending}"),
    ("however", "{opening}; however, {ending}"),
    ("although", "although {opening}, {ending}"),
    ("though", "though {opening}, {ending}"),
)

_PLAIN_POSITIVE = (
    ("great", "{this} {thing} {is} great"),
    ("love", "I love {this} {thing}"),
    ("excellent", "{this} {thing} {is} excellent"),
    ("recommend", "I would definitely recommend {this} {thing}"),
    ("worth", "{this} {thing} {is} worth every penny"),
    ("best", "the best {thing} I have ever {used}"),
    ("happy", "very happy with {this} {thing}"),
    ("highly", "I highly recommend it"),
    ("stars", "five stars from me"),
)

_PLAIN_NEGATIVE = (
    ("terrible", "{this} {thing} {is} terrible"),
    ("hate", "I hate {this} {thing}"),
    ("awful", "{this} {thing} {is} awful"),
    ("waste", "{this} {thing} {is} a waste of money"),
    ("disappointed", "very disappointed with {this} {thing}"),
    ("worst", "the worst {thing} I have ever {used}"),
    ("avoid", "avoid {this} {thing}"),
    ("regret", "I regret buying {this} {thing}"),
    ("star", "one star from me"),
)


def _fill(template: str, noun: _Noun, used: str, **parts: str) -> str:
    """``template`` filled for ``noun``: each part is filled first (it may itself use the
    noun's fields and ``{subj}``), then the template; spaces are normalised."""
    fields = noun.fields()
    fields["used"] = used
    filled = {name: part.format(**fields) for name, part in parts.items()}
    text = template.format(**fields, **filled)
    return " ".join(text.split())


def _simple(templates: Sequence[tuple[str, str]], vocab: _Vocabulary) -> list[tuple[str, list[str]]]:
    """(template name, its sentences over every noun of the domain)."""
    return [(name, [_fill(t, noun, vocab.used) for noun in vocab.nouns]) for name, t in templates]


def _contrast(vocab: _Vocabulary, openings: Sequence[str], endings: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(template name, its sentences): a template per connective and ending, filled with
    every noun and opening. The ending's subject is the pronoun when the opening names the
    product ("I wanted to love this pan, but it broke"), "the {thing}" or "this {thing}"
    otherwise ("the box was damaged, but the pan works perfectly")."""
    out = []
    for name, template in _CONTRAST:
        for i, ending in enumerate(endings):
            texts = []
            for noun in vocab.nouns:
                if not vocab.fits(ending, noun):
                    continue
                for opening in openings:
                    if not vocab.fits(opening, noun):
                        continue
                    named = "{this}" in opening or "{subj}" in opening
                    subjects = ("{it}",) if named else ("the {thing}", "{this} {thing}")
                    texts += [
                        _fill(
                            template,
                            noun,
                            vocab.used,
                            opening=opening.replace("{subj}", "the {thing}"),
                            ending=ending.replace("{subj}", subject),
                        )
                        for subject in subjects
                    ]
            out.append((f"{name}_{i}", texts))
    return out


def _plain_from_endings(endings: Sequence[str], vocab: _Vocabulary) -> list[tuple[str, list[str]]]:
    """The domain's endings said on their own, of "the {thing}" (a control template each)."""
    return [
        (
            f"ending_{i}",
            [
                _fill(e.replace("{subj}", "the {thing}"), noun, vocab.used)
                for noun in vocab.nouns
                if vocab.fits(e, noun)
            ],
        )
        for i, e in enumerate(endings)
    ]


_Builder = Callable[[_Vocabulary], list[tuple[str, list[str]]]]

_BUILDERS: dict[str, _Builder] = {
    "negated_positive": lambda v: _simple(_NEGATED_POSITIVE, v),
    "negated_negative": lambda v: _simple(_NEGATED_NEGATIVE, v),
    "contrast_negative": lambda v: _contrast(
        v, _COMMON_GOOD_OPENINGS + v.good_openings, _COMMON_BAD_ENDINGS + v.bad_endings
    ),
    "contrast_positive": lambda v: _contrast(
        v, _COMMON_BAD_OPENINGS + v.bad_openings, _COMMON_GOOD_ENDINGS + v.good_endings
    ),
    "plain_positive": lambda v: _simple(_PLAIN_POSITIVE, v) + _plain_from_endings(v.good_endings, v),
    "plain_negative": lambda v: _simple(_PLAIN_NEGATIVE, v) + _plain_from_endings(v.bad_endings, v),
}


@cache
def _pools(domain: str) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per family, per template, the distinct sentences (a sentence two templates of a
    family both make belongs to the first). Cached: do not modify."""
    vocab = _VOCABULARIES[domain]
    pools: dict[str, tuple[tuple[str, ...], ...]] = {}
    for family in FAMILIES:
        seen: set[str] = set()
        per_template = []
        for _name, texts in _BUILDERS[family](vocab):
            fresh = tuple(t for t in dict.fromkeys(texts) if t not in seen)
            seen.update(fresh)
            if fresh:
                per_template.append(fresh)
        pools[family] = tuple(per_template)
    return pools


def _all_examples(domain: str) -> list[ContrastExample]:
    """Every sentence ``contrast_set`` may draw for ``domain``, family by family (for tests
    and for reading; not balanced)."""
    pools = _pools(resolve_domain(domain))
    return [
        ContrastExample(text, FAMILY_LABELS[family], family)
        for family in FAMILIES
        for texts in pools[family]
        for text in texts
    ]


def _draw(per_template: Sequence[Sequence[str]], count: int, rng: random.Random) -> list[str]:
    """``count`` distinct sentences: the templates in a random order, visited in turn, each
    giving a random sentence of its own not drawn before."""
    queues = [rng.sample(texts, len(texts)) for texts in per_template]
    rng.shuffle(queues)
    out: list[str] = []
    while len(out) < count:
        for queue in queues:
            if queue and len(out) < count:
                out.append(queue.pop())
    return out


def _allocate(half: int, caps: Sequence[int]) -> list[int]:
    """``half`` sentences per class over the pairs, in proportion to their weights as far as
    each pair's capacity allows: one at a time, to the pair least filled for its weight."""
    counts = [0] * len(_PAIRS)
    for _ in range(half):
        open_pairs = [i for i in range(len(_PAIRS)) if counts[i] < caps[i]]
        best = min(open_pairs, key=lambda i: (counts[i] / _PAIRS[i][2], -_PAIRS[i][2], i))
        counts[best] += 1
    return counts


def _integer(value: object) -> int | None:
    """``value`` as an int (numpy integers too), or None for anything else (bool too)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def contrast_set(domain: str = "kitchen", seed: int = 0, size: int | None = None) -> list[ContrastExample]:
    """The negation and contrast test set of ``domain``, ``size`` sentences (default 400),
    half labelled "positive" and half "negative", in a random order fixed by ``seed``.

    ``domain``: "kitchen", "books", "dvd", "electronics" or "generic", or a dataset name
    such as "hatn:kitchen", "amazon:books", "fdu:kitchen_housewares" (see
    ``resolve_domain``; unknown domains get the generic vocabulary). ``size`` must be an
    even number from 2 to the number of sentences the domain can give (ValueError
    otherwise); each family is then present from size 6 on.
    """
    vocab_name = resolve_domain(domain)
    pools = _pools(vocab_name)
    # each pair's two families give the same number, so the classes balance exactly
    caps = [min(sum(map(len, pools[pos])), sum(map(len, pools[neg]))) for pos, neg, _weight in _PAIRS]
    most = 2 * sum(caps)
    wanted = min(DEFAULT_SIZE, most) if size is None else _integer(size)
    if wanted is None or wanted < 2 or wanted % 2 or wanted > most:
        raise ValueError(
            f"contrast set size must be an even number from 2 to {most} (domain {vocab_name}), got {size!r}"
        )
    number = _integer(seed)
    if number is None:
        raise ValueError(f"contrast set seed must be an integer, got {seed!r}")
    rng = random.Random(number)
    examples = []
    for (pos, neg, _weight), count in zip(_PAIRS, _allocate(wanted // 2, caps)):
        for family in (pos, neg):
            label = FAMILY_LABELS[family]
            examples += [ContrastExample(t, label, family) for t in _draw(pools[family], count, rng)]
    rng.shuffle(examples)
    return examples


# --------------------------------------------------------------------------- scoring


def score(
    predicted: Sequence[str],
    examples: Sequence[ContrastExample],
    mapping: Mapping[str, str] | None = None,
) -> dict:
    """Accuracy of ``predicted`` (one label per example, in order) overall and per family:
    ``{"accuracy": float, "n": int, "families": {family: {"accuracy": float, "n": int}}}``,
    families in ``FAMILIES`` order, those with no example left out. Predictions are
    compared with the examples' "positive" / "negative", or with ``mapping[label]`` when a
    mapping is given (``label_map(model.classes)``, for a model with other class names)."""
    if len(predicted) != len(examples):
        raise ValueError(f"{len(predicted)} predictions for {len(examples)} contrast examples")
    if not examples:
        raise ValueError("no contrast examples to score")
    right: dict[str, int] = {}
    total: dict[str, int] = {}
    for guess, example in zip(predicted, examples):
        expected = mapping[example.label] if mapping is not None else example.label
        total[example.family] = total.get(example.family, 0) + 1
        right[example.family] = right.get(example.family, 0) + (guess == expected)
    order = list(FAMILIES) + sorted(set(total) - set(FAMILIES))
    families = {f: {"accuracy": right[f] / total[f], "n": total[f]} for f in order if f in total}
    return {"accuracy": sum(right.values()) / len(examples), "n": len(examples), "families": families}


def label_map(classes: Sequence[str]) -> dict[str, str]:
    """``{"positive": ..., "negative": ...}``: the contrast set's labels as the model's own
    class names. Classes positive/negative or pos/neg (any case) map to themselves as the
    model spells them; FDU-MTL's "0" / "1" give ``{"positive": "1", "negative": "0"}``.
    Other classes raise ValueError."""
    names = [str(c) for c in classes]
    by_lower = {name.strip().lower(): name for name in names}
    if len(names) == 2 and len(by_lower) == 2:
        for positive, negative in (*NAMED_SENTIMENT, ("1", "0")):
            if set(by_lower) == {positive, negative}:
                return {POSITIVE: by_lower[positive], NEGATIVE: by_lower[negative]}
    shown = ", ".join(repr(n) for n in names) or "none"
    raise ValueError(
        f"the contrast set needs a binary sentiment model with classes positive/negative, pos/neg or 0/1; "
        f"this model's classes are {shown}"
    )

"""Tests of the CheckList-style negation and contrast set (sparse_rational/data/contrast.py).
Pure Python, no model: generation, balance, determinism, domains, scoring, label maps."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sparse_rational.data import contrast
from sparse_rational.data.contrast import (
    DOMAINS,
    FAMILIES,
    ContrastExample,
    contrast_set,
    label_map,
    resolve_domain,
    score,
)

ALL_DOMAINS = (*DOMAINS, "generic")
NEGATION_CUES = {"not", "no", "never", "nothing", "none", "nor", "cannot"}
CONTRAST_CUES = {"but", "however", "although", "though", "yet"}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def has_negation(text: str) -> bool:
    return any(w in NEGATION_CUES or w.endswith("n't") for w in words(text))


def has_contrast(text: str) -> bool:
    return any(w in CONTRAST_CUES for w in words(text))


def texts(examples: list[ContrastExample]) -> list[str]:
    return [e.text for e in examples]


# ------------------------------------------------------------------ size, balance, families


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_default_set_size_balance_and_families(domain):
    examples = contrast_set(domain)
    assert len(examples) == 400
    labels = Counter(e.label for e in examples)
    assert labels == {"positive": 200, "negative": 200}
    families = Counter(e.family for e in examples)
    assert families == {
        "negated_positive": 80,
        "negated_negative": 80,
        "contrast_negative": 80,
        "contrast_positive": 80,
        "plain_positive": 40,
        "plain_negative": 40,
    }
    assert set(families) == set(FAMILIES)


@pytest.mark.parametrize("size", [2, 4, 6, 10, 52, 300, 498, 1000])
def test_requested_size_is_exact_and_balanced(size):
    for domain in ("kitchen", "dvd"):
        examples = contrast_set(domain, seed=3, size=size)
        assert len(examples) == size
        labels = Counter(e.label for e in examples)
        assert labels["positive"] == labels["negative"] == size // 2
        families = Counter(e.family for e in examples)
        # the mirrored families of each pair are drawn in equal numbers
        assert families["negated_positive"] == families["negated_negative"]
        assert families["contrast_positive"] == families["contrast_negative"]
        assert families["plain_positive"] == families["plain_negative"]
        if size >= 6:
            assert set(families) == set(FAMILIES)


def test_labels_follow_the_family():
    for domain in ALL_DOMAINS:
        for e in contrast._all_examples(domain):
            assert e.label == contrast.FAMILY_LABELS[e.family], e
            assert e.label in ("positive", "negative")


def test_families_are_pure():
    """Negation words only in the negation families, contrast words only in the contrast
    families, neither in the controls: a family tests one thing."""
    for domain in ALL_DOMAINS:
        for e in contrast._all_examples(domain):
            if e.family.startswith("negated_"):
                assert has_negation(e.text) and not has_contrast(e.text), e
            elif e.family.startswith("contrast_"):
                assert has_contrast(e.text) and not has_negation(e.text), e
            else:
                assert e.family.startswith("plain_")
                assert not has_negation(e.text) and not has_contrast(e.text), e


def test_sentence_lengths_and_form():
    for domain in ALL_DOMAINS:
        for e in contrast._all_examples(domain):
            n = len(e.text.split())
            assert 3 <= n <= 20, e
            assert e.text == " ".join(e.text.split()), e  # no double or edge spaces
            assert "{" not in e.text and "}" not in e.text, e  # every field filled
            assert e.text[0].islower() or e.text.startswith("I "), e


def test_no_duplicates():
    for domain in ALL_DOMAINS:
        every = texts(contrast._all_examples(domain))
        assert len(every) == len(set(every)), [t for t, k in Counter(every).items() if k > 1][:5]
        lowered = [t.lower() for t in every]
        assert len(lowered) == len(set(lowered))
        for seed in range(3):
            drawn = texts(contrast_set(domain, seed=seed, size=1000))
            assert len(drawn) == len(set(drawn))


# ------------------------------------------------------------------ determinism


def test_same_seed_same_list():
    first = contrast_set("books", seed=7)
    contrast._pools.cache_clear()
    second = contrast_set("books", seed=7)
    assert first == second
    assert contrast_set("books") == contrast_set("books", seed=0)


def test_different_seeds_differ():
    drawn = [frozenset(texts(contrast_set("kitchen", seed=seed))) for seed in range(5)]
    assert len(set(drawn)) == 5  # different sentences, not only a different order
    assert contrast_set("kitchen", seed=0) != contrast_set("kitchen", seed=1)


def test_order_is_shuffled():
    """The families come interleaved, not one block after another."""
    families = [e.family for e in contrast_set("kitchen")]
    changes = sum(a != b for a, b in zip(families, families[1:]))
    assert changes > 100


def test_same_list_in_another_process():
    """Nothing depends on set order or string hashing: another interpreter with another
    hash seed draws the same list; and the module loads without torch."""
    code = (
        "import json, sys\n"
        "from sparse_rational.data.contrast import contrast_set\n"
        "print(json.dumps([[e.text, e.label, e.family] for e in contrast_set('electronics', seed=5)]))\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    listed, torch_loaded = out.strip().splitlines()
    here = [[e.text, e.label, e.family] for e in contrast_set("electronics", seed=5)]
    assert json.loads(listed) == here
    assert torch_loaded == "False"


def test_module_imports_only_the_standard_library():
    tree = ast.parse(Path(contrast.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, name


# ------------------------------------------------------------------ domains


@pytest.mark.parametrize(
    "name, expected",
    [
        ("kitchen", "kitchen"),
        ("hatn:kitchen", "kitchen"),
        ("amazon:kitchen", "kitchen"),
        ("fdu:kitchen_housewares", "kitchen"),
        ("KITCHEN", "kitchen"),
        ("fdu:books", "books"),
        ("hatn:dvd", "dvd"),
        ("amazon:electronics", "electronics"),
        ("fdu:MR", "dvd"),
        ("fdu:video", "dvd"),
        ("fdu:apparel", "generic"),
        ("my_reviews.tsv", "generic"),
        ("generic", "generic"),
    ],
)
def test_domain_aliases(name, expected):
    assert resolve_domain(name) == expected
    assert contrast_set(name, seed=2) == contrast_set(expected, seed=2)


def test_domains_use_their_own_words():
    sets = {d: " ".join(texts(contrast_set(d))) for d in ALL_DOMAINS}
    assert "kettle" in sets["kitchen"] and "headphones" not in sets["kitchen"]
    assert "novel" in sets["books"] and "kettle" not in sets["books"]
    assert "movie" in sets["dvd"] or "film" in sets["dvd"]
    assert "charger" in sets["electronics"] and "novel" not in sets["electronics"]
    assert "product" in sets["generic"] and "kettle" not in sets["generic"]
    assert len({frozenset(texts(contrast_set(d))) for d in ALL_DOMAINS}) == len(ALL_DOMAINS)


def test_plural_nouns_agree():
    every = texts(contrast._all_examples("electronics"))
    assert "these headphones are not good" in every
    assert "I wanted to love these earbuds, but they broke after a week" in every
    joined = "\n".join(every)
    assert "this headphones" not in joined and "headphones is" not in joined and "earbuds was" not in joined


def test_appliance_phrases_only_for_appliances():
    every = "\n".join(texts(contrast._all_examples("kitchen")))
    assert "the toaster stopped working after two days" in every
    assert "knife stopped working" not in every and "cutting board stopped working" not in every


# ------------------------------------------------------------------ hand-picked sentences

# sentences without a product noun: each is a template of its own, so every default set has it
ALWAYS_DRAWN = [
    ("not bad at all", "positive", "negated_negative"),
    ("no complaints at all", "positive", "negated_negative"),
    ("I have no complaints", "positive", "negated_negative"),
    ("it never disappoints", "positive", "negated_negative"),
    ("no regrets buying it", "positive", "negated_negative"),
    ("not good at all", "negative", "negated_positive"),
    ("not what I hoped for", "negative", "negated_positive"),
    ("I can't say I like it", "negative", "negated_positive"),
    ("not worth the money", "negative", "negated_positive"),
    ("five stars from me", "positive", "plain_positive"),
    ("one star from me", "negative", "plain_negative"),
]

# sentences a domain can give (drawn or not, depending on the seed)
CAN_DRAW = [
    ("kitchen", "this kettle is not bad", "positive", "negated_negative"),
    ("kitchen", "this kettle is not good", "negative", "negated_positive"),
    ("kitchen", "I would not recommend this blender", "negative", "negated_positive"),
    ("kitchen", "never had a problem with this toaster", "positive", "negated_negative"),
    ("kitchen", "the box was damaged, but the pan works perfectly", "positive", "contrast_positive"),
    ("kitchen", "it took a while to arrive, but I love it", "positive", "contrast_positive"),
    ("kitchen", "I was skeptical at first, but this knife is great", "positive", "contrast_positive"),
    ("kitchen", "I wanted to love this blender, but it broke after a week", "negative", "contrast_negative"),
    ("kitchen", "this kettle looks great, but it stopped working after two days", "negative", "contrast_negative"),
    ("kitchen", "the coffee maker stopped working after two days", "negative", "plain_negative"),
    ("books", "I wanted to love this novel, but the plot went nowhere", "negative", "contrast_negative"),
    ("books", "the first chapter is slow, but I loved every page", "positive", "contrast_positive"),
    ("books", "this book is not bad at all", "positive", "negated_negative"),
    ("dvd", "the first half is gripping, but the second half dragged", "negative", "contrast_negative"),
    ("dvd", "the best movie I have ever seen", "positive", "plain_positive"),
    ("electronics", "the headphones are not worth the money", "negative", "negated_positive"),
    ("electronics", "the charger broke after a week", "negative", "plain_negative"),
    ("generic", "I have no complaints about this product", "positive", "negated_negative"),
]


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_hand_picked_sentences_always_drawn(domain):
    for seed in range(3):
        drawn = {e.text: e for e in contrast_set(domain, seed=seed)}
        for text, label, family in ALWAYS_DRAWN:
            assert drawn.get(text) == ContrastExample(text, label, family), (domain, seed, text)


@pytest.mark.parametrize("domain, text, label, family", CAN_DRAW)
def test_hand_picked_sentences_available(domain, text, label, family):
    every = {e.text: e for e in contrast._all_examples(domain)}
    assert every.get(text) == ContrastExample(text, label, family)


def test_hand_picked_sentence_is_drawn_by_some_seed():
    wanted = "the box was damaged, but the pan works perfectly"
    assert any(wanted in texts(contrast_set("kitchen", seed=s, size=2000)) for s in range(20))


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("size", [0, 1, 3, 7, 399, -2, 10**6, 2.0, "10", True])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size") as caught:
        contrast_set("kitchen", size=size)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("seed", [1.5, "0", None, True])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError, match="seed"):
        contrast_set("kitchen", seed=seed)


def test_numpy_style_integers_accepted():
    class Index:  # what numpy integers offer
        def __init__(self, value):
            self.value = value

        def __index__(self):
            return self.value

    assert contrast_set("dvd", seed=Index(4), size=Index(20)) == contrast_set("dvd", seed=4, size=20)


# ------------------------------------------------------------------ label_map


@pytest.mark.parametrize(
    "classes, expected",
    [
        (["positive", "negative"], {"positive": "positive", "negative": "negative"}),
        (("negative", "positive"), {"positive": "positive", "negative": "negative"}),
        (["Negative", "POSITIVE"], {"positive": "POSITIVE", "negative": "Negative"}),
        (["0", "1"], {"positive": "1", "negative": "0"}),
        (["1", "0"], {"positive": "1", "negative": "0"}),
        (["neg", "pos"], {"positive": "pos", "negative": "neg"}),
        (["Pos", "Neg"], {"positive": "Pos", "negative": "Neg"}),
    ],
)
def test_label_map(classes, expected):
    assert label_map(classes) == expected


@pytest.mark.parametrize(
    "classes",
    [
        ["spam", "ham"],
        ["positive", "negative", "neutral"],
        ["positive"],
        [],
        ["positive", "positive"],
        ["0", "2"],
        ["pos", "negative"],
    ],
)
def test_label_map_rejects_other_classes(classes):
    with pytest.raises(ValueError, match="classes") as caught:
        label_map(classes)
    message = str(caught.value)
    assert "\n" not in message
    for name in classes:
        assert repr(name) in message


# ------------------------------------------------------------------ score


def test_score_constant_answers_get_half():
    examples = contrast_set("kitchen")
    for label in ("positive", "negative"):
        result = score([label] * len(examples), examples)
        assert result["accuracy"] == 0.5
        assert result["n"] == 400
        assert list(result["families"]) == list(FAMILIES)
        for family, entry in result["families"].items():
            wanted = 1.0 if contrast.FAMILY_LABELS[family] == label else 0.0
            assert entry["accuracy"] == wanted
        assert sum(entry["n"] for entry in result["families"].values()) == 400


def test_score_known_answers():
    examples = contrast_set("books", seed=1)
    truth = [e.label for e in examples]
    assert score(truth, examples)["accuracy"] == 1.0
    flipped = ["negative" if t == "positive" else "positive" for t in truth]
    assert score(flipped, examples)["accuracy"] == 0.0
    # a bag of words that calls every "not" and "but" sentence negative
    naive = ["negative" if has_negation(e.text) or has_contrast(e.text) else e.label for e in examples]
    result = score(naive, examples)
    assert result["families"]["negated_positive"]["accuracy"] == 1.0
    assert result["families"]["negated_negative"]["accuracy"] == 0.0
    assert result["families"]["contrast_negative"]["accuracy"] == 1.0
    assert result["families"]["contrast_positive"]["accuracy"] == 0.0
    assert result["families"]["plain_positive"]["accuracy"] == 1.0
    assert result["accuracy"] == (80 + 80 + 40 + 40) / 400


def test_score_by_hand():
    examples = [
        ContrastExample("not bad at all", "positive", "negated_negative"),
        ContrastExample("not good at all", "negative", "negated_positive"),
        ContrastExample("I love this pan", "positive", "plain_positive"),
        ContrastExample("I hate this pan", "negative", "plain_negative"),
    ]
    result = score(["positive", "positive", "positive", "positive"], examples)
    assert result == {
        "accuracy": 0.5,
        "n": 4,
        "families": {
            "negated_positive": {"accuracy": 0.0, "n": 1},
            "negated_negative": {"accuracy": 1.0, "n": 1},
            "plain_positive": {"accuracy": 1.0, "n": 1},
            "plain_negative": {"accuracy": 0.0, "n": 1},
        },
    }
    assert json.loads(json.dumps(result)) == result
    # an FDU-MTL model answers "0" / "1"
    mapping = label_map(["0", "1"])
    assert score(["1", "0", "1", "1"], examples, mapping)["accuracy"] == 0.75
    assert score(["positive", "negative", "positive", "negative"], examples, mapping)["accuracy"] == 0.0


def test_score_rejects_mismatched_lengths():
    examples = contrast_set("dvd", size=10)
    with pytest.raises(ValueError, match="9 predictions for 10"):
        score(["positive"] * 9, examples)
    with pytest.raises(ValueError):
        score([], [])


def test_contrast_pairs_end_with_the_texts_own_sentence_and_label():
    from sparse_rational.data import Example
    from sparse_rational.data.augment import contrast_pairs, sentences

    train = [
        Example("Great pan. It heats evenly!", "pos"),
        Example("Works well and cleans up fast.", "pos"),
        Example("It broke after a week. Avoid it.", "neg"),
    ]
    pairs = contrast_pairs(train, 2, seed=3)
    assert len(pairs) == 6 and [p.label for p in pairs] == ["pos"] * 4 + ["neg"] * 2
    for ex, pair in zip([e for e in train for _ in range(2)], pairs):
        opening, ending = pair.text.split(", but ")
        own = [s[:1].lower() + s[1:] for s in sentences(ex.text)]
        assert ending in own  # the turn ends with the text's own sentence, hence its label
        others = [s for e in train if e.label != ex.label for s in sentences(e.text)]
        assert opening in others  # and opens with a sentence of the other label
    assert contrast_pairs(train, 2, seed=3) == pairs and contrast_pairs(train, 2, seed=4) != pairs
    assert contrast_pairs(train, 0) == [] and contrast_pairs(train[:2], 1) == []  # one label: no pair


def test_a_fraction_of_contrast_pairs_is_that_share_of_the_texts():
    from sparse_rational.data import Example
    from sparse_rational.data.augment import contrast_pairs

    train = [Example(f"text {k} is fine.", "pos" if k % 2 else "neg") for k in range(40)]
    assert len(contrast_pairs(train, 0.25, seed=1)) == 10 and len(contrast_pairs(train, 1.5, seed=1)) == 60
    assert contrast_pairs(train, 0.25, seed=1) == contrast_pairs(train, 0.25, seed=1)


def _polar_ratio():
    # the first label (sorted) is "neg": a positive ratio leans negative
    return {"great": -1.5, "broken": 1.5, "flimsy": 1.2, "problem": 1.0, "good": -0.8}


@pytest.mark.parametrize(
    "sentence, sign, turned",
    [
        ("This pan is great", -1, "This pan is not great"),  # an auxiliary, then a word of the text's label
        ("The lid was flimsy and broken", 1, "The lid was not flimsy and broken"),
        ("It is not good at all", 1, "It is good at all"),  # a negator before a word of the other label
        ("I never had a problem with it", -1, "I had a problem with it"),
        ("The handle isn't flimsy", -1, "The handle is flimsy"),  # a contraction gives its auxiliary back
        ("I have had no problem", -1, "I have had problem"),
        ("We had a great time with it", -1, "We never had a great time with it"),  # main-verb have
        ("This pan is great", 1, None),  # the sentence leans the other way
        ("It is a pan", -1, None),  # no word of either label
        ("It is not a pan that is great", -1, None),  # the negator governs no word of the other label
        ("For what it is, great", -1, None),  # no "not" after "is,"
    ],
)
def test_negate_turns_the_sentence(sentence, sign, turned):
    from sparse_rational.data.augment import negate

    assert negate(sentence, _polar_ratio(), sign, 0.7) == turned


def test_negation_pairs_are_a_sentence_and_its_negation_with_the_other_label():
    from sparse_rational.data import Example
    from sparse_rational.data.augment import negation_pairs, sentences

    good = ["This pan is great. We love it.", "The kettle is great and quiet.", "It is great value."]
    bad = ["The lid is flimsy. It was broken in a week.", "The handle is flimsy.", "It was broken on arrival."]
    train = [Example(t, "pos") for t in good * 3] + [Example(t, "neg") for t in bad * 3]
    pairs = negation_pairs(train, 1, seed=2)
    assert len(pairs) == 2 * len(train)  # every text has a sentence that turns
    for ex, (kept, turned) in zip(train, zip(pairs[::2], pairs[1::2])):
        assert kept.label == ex.label and kept.text in sentences(ex.text)
        assert turned.label != ex.label and " not " in f" {turned.text} "
        assert turned.text.replace(" not", "", 1) == kept.text
    assert negation_pairs(train, 1, seed=2) == pairs and negation_pairs(train, 0) == []
    assert len(negation_pairs(train, 0.5, seed=1)) == 2 * 9  # a fraction: that share of the texts
    with pytest.raises(ValueError, match="two classes"):
        negation_pairs([*train, Example("It is great.", "meh")], 1)


def test_the_held_out_set_is_labelled_by_family_and_shares_no_sentence_with_the_templates():
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "data" / "heldout_negation.tsv"
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert len(rows) == 120 and all(len(r) == 3 for r in rows)
    assert all(contrast.FAMILY_LABELS[family] == label for label, family, _ in rows)
    texts = {text for *_, text in rows}
    assert len(texts) == 120
    templated = {e.text.lower() for d in (*contrast.DOMAINS, contrast.GENERIC) for e in contrast._all_examples(d)}
    assert not texts & templated

"""Group lasso on synthetic tasks: useless states are driven to zero and pruned away."""

import numpy as np
import pytest
import torch

from sparse_rational.config import ModelOptions, RunOptions
from sparse_rational.data import Example, Splits
from sparse_rational.learn import StructureOptions
from sparse_rational.pipeline import train_text_classifier
from sparse_rational.train import TrainConfig

VOCAB = [f"w{i}" for i in range(16)]


@pytest.fixture(scope="module")
def one_hot_vectors(tmp_path_factory):
    """A GloVe-format text file with one-hot vectors (also exercises the text loader)."""
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(VOCAB))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(VOCAB, eye)))
    return str(path)


def make_task(kind: str, n: int, seed: int) -> list[Example]:
    """Random sequences of w4..w15. ``unigram``: positive iff it holds w0 (negatives hold w1).
    ``bigram``: every document holds w2 then w3; positive iff they are adjacent (a WFSA
    with one state reads its score at the end and cannot tell; one of two states can)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(VOCAB[4:], size=rng.integers(6, 12)))
        if kind == "unigram":
            words.insert(rng.integers(0, len(words) + 1), "w0" if label else "w1")
        else:
            if label:
                k = rng.integers(0, len(words) + 1)
                words[k:k] = ["w2", "w3"]
            else:  # w2 before w3 as well, but never adjacent: only adjacency decides
                k = rng.integers(0, len(words) - 1)
                words.insert(k, "w2")
                words.insert(rng.integers(k + 2, len(words) + 1), "w3")
                assert "w2 w3" not in " ".join(words)
        out.append(Example(" ".join(words), "pos" if label else "neg"))
    return out


def learn(kind, vectors, reg, patterns="4x3", seed=0):
    splits = Splits(make_task(kind, 400, 1), make_task(kind, 100, 2), make_task(kind, 100, 3))
    cfg = TrainConfig(epochs=40, patience=10, batch_size=32, lr=0.05, seed=seed)
    # the paper's method: the penalty's gradient (every state alike), scores read at the
    # document's end, frozen vectors
    opts = StructureOptions(reg_epochs=40, penalty_update="gradient", depth_discount=0.0)
    return train_text_classifier(
        splits,
        vectors,
        patterns,
        reg_strength=reg,
        train_config=cfg,
        structure_options=opts,
        dropout=0.0,
        input_dropout=0.0,
        readout="final",
        verbose=False,
        options=RunOptions(model=ModelOptions(vectors="frozen")),
    )


def test_unigram_task_prunes_to_unigram_patterns(one_hot_vectors):
    torch.set_num_threads(1)
    clf = learn("unigram", one_hot_vectors, reg=0.01)
    m = clf.metrics
    assert m["test_accuracy"] >= 0.95
    assert m["structure"], "the decisive word must keep at least one WFSA"
    assert all(n == 1 for n in m["structure"]), m["structure"]
    # the removed groups really went (close) to zero; the kept ones are clearly alive
    norms = [x for g in m["group_norms"] for x in g]
    assert min(x for x in norms if x >= 0.1) > 0.5
    assert max(x for x in norms if x < 0.1) < 0.05


def test_bigram_task_keeps_a_bigram(one_hot_vectors):
    torch.set_num_threads(1)
    clf = learn("bigram", one_hot_vectors, reg=0.01)
    m = clf.metrics
    assert m["test_accuracy"] >= 0.9
    assert max(m["structure"]) >= 2, m["structure"]
    assert m["transitions"] < 12

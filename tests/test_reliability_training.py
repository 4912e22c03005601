"""Reliability: degenerate training ends cleanly (every state pruned, a NaN loss, one
class, no dev set, documents with no known word, a 100k-token document in bounded memory),
and runs are deterministic.

Split by topic from the former tests/test_reliability.py; shared helpers:
test_reliability_helpers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_reliability_helpers import (
    SPLITS,
    _train_cli,
    one_line,
    one_torch_thread,
    onehot_vectors,
    run_api,
    same_result,
    task,
)

from sparse_rational.checkpoint import FILE, checkpoint_dir, read_checkpoint
from sparse_rational.cli import main
from sparse_rational.data import Example, Splits
from sparse_rational.errors import UserError
from sparse_rational.learn import StructureOptions
from sparse_rational.pipeline import TextClassifier, train_text_classifier
from sparse_rational.train import TrainConfig

_one_thread = pytest.fixture(autouse=True, scope="module", name="_one_thread")(one_torch_thread)
onehot = pytest.fixture(scope="module", name="onehot")(onehot_vectors)


# ------------------------------------------------------------------------------------------
# 4. degenerate training


def test_every_state_pruned_predicts_the_class_prior(onehot, tmp_path, capsys):
    splits = Splits(task(100, 5, pos_share=0.7), task(20, 6), task(20, 7))
    clf = train_text_classifier(
        splits,
        onehot,
        "2x2",
        reg_strength=1.0,
        train_config=TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0),
        structure_options=StructureOptions(reg_epochs=3, epsilon=0.5),
        verbose=True,
    )
    assert "every state was pruned" in capsys.readouterr().err
    assert clf.metrics["structure"] == [] and clf.metrics["transitions"] == 0
    prior = np.array([np.mean([e.label == c for e in splits.train]) for c in clf.classes])
    np.testing.assert_allclose(clf.predict_proba(["w0 w2", "w9", ""]), np.tile(prior, (3, 1)), atol=1e-6)
    loaded = TextClassifier.load(clf.save(tmp_path / "empty"))
    np.testing.assert_allclose(loaded.predict_proba(["w1"]), prior[None], atol=1e-6)


class NanAfter(torch.nn.CrossEntropyLoss):
    calls = 0
    limit = 10**9

    def forward(self, logits, target):
        NanAfter.calls += 1
        loss = super().forward(logits, target)
        return loss * float("nan") if NanAfter.calls > NanAfter.limit else loss


def test_nan_loss_stops_with_one_line_keeps_the_last_good_checkpoint(tiny_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", NanAfter)
    NanAfter.calls, NanAfter.limit = 0, 2 * 3 + 1  # 3 batches an epoch: NaN in epoch 3
    out = tmp_path / "m"
    args = _train_cli(tiny_files, out, "--batch-size", "64", "--epochs", "5", "--negation-pairs", "0")
    assert main(args) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "epoch 3" in err and "nan" in err and "train epoch 2" in err and str(checkpoint_dir(out)) in err
    ck = read_checkpoint(checkpoint_dir(out) / FILE)
    assert (ck.phase, ck.epoch) == ("train", 2) and not out.exists()
    # a run that diverges at once, naturally (a huge learning rate), saves nothing
    NanAfter.limit = 10**9
    assert main(_train_cli(tiny_files, tmp_path / "n", "--lr", "1e30", "--clip", "0")) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint was written" in err


def test_single_class_and_empty_training_data_are_one_line_errors(onehot):
    one = [Example("w0 w2", "pos"), Example("w0 w3", "pos")]
    with pytest.raises(UserError) as info:
        run_api(onehot, splits=Splits(one, [], []))
    one_line(info.value, "only one class")
    with pytest.raises(UserError) as info:
        run_api(onehot, splits=Splits([], one, []))
    one_line(info.value, "empty")


def test_empty_dev_set_trains_on_the_training_loss(onehot):
    clf = run_api(onehot, splits=Splits(SPLITS.train, [], SPLITS.test), reg=0.01)
    assert clf.metrics["dev_accuracy"] is None and clf.metrics["test_accuracy"] > 0.5


def test_documents_with_no_known_word(onehot):
    dev = [Example("zzz qqq", "pos"), Example("!!! ???", "neg")]
    clf = run_api(onehot, splits=Splits(SPLITS.train, dev, dev), epochs=2)
    probs = clf.predict_proba(["xyzzy plugh", "", "\u2603 \x00", "w0"])
    assert probs.shape == (4, 2) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)


_RSS_SCRIPT = textwrap.dedent("""
    import resource, torch
    torch.set_num_threads(1)
    from sparse_rational.model import ModelConfig, RationalClassifier
    from sparse_rational.train import EncodedData, TrainConfig, fit, predict_proba

    def data(T):
        g = torch.Generator().manual_seed(0)
        docs = [torch.randint(0, 100, (T,), generator=g)]
        docs += [torch.randint(0, 100, (50,), generator=g) for _ in range(7)]
        return EncodedData(docs, torch.tensor([0, 1] * 4))

    def peak_growth(fn):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024

    model = RationalClassifier(ModelConfig((4,) * 6, 50, 2, vocab_size=100), torch.randn(100, 50) / 7, impl="scan")
    dev = EncodedData(data(50).docs[1:], data(50).labels[1:])
    fit(model, data(50), dev, TrainConfig(epochs=1), verbose=False)  # warm up (lazy imports)
    # peak RSS only grows: first a 5,000-token document, then a 100,000-token one cut to 5,000
    short = peak_growth(lambda: fit(model, data(5_000), dev, TrainConfig(epochs=1, max_tokens=0), verbose=False))
    long = peak_growth(lambda: fit(model, data(100_000), dev, TrainConfig(epochs=1, max_tokens=5_000), verbose=False))
    whole = peak_growth(lambda: predict_proba(model, data(100_000)))  # prediction reads it whole, no graph
    print(short, long, whole)
""")


def test_a_100k_token_document_trains_in_bounded_memory():
    """Training cuts documents at --max-tokens (20,000 by default; 5,000 here): a batch
    holding a 100,000-token document costs no more than one holding a 5,000-token document,
    and prediction (no autograd graph) reads the whole document in little memory.
    Measured once with the reference recurrence, one forward+backward over all 100,000
    tokens grew the peak RSS by ~1 GB (about 10 kB of graph per step; linear in length)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    short, long, whole = (int(x) for x in proc.stdout.split())
    assert long <= 0.2 * short + 30, (short, long)
    assert short < 300 and whole < 300, (short, whole)


def test_batches_are_capped_in_padded_tokens():
    from sparse_rational.train import bucket_batches

    lengths = np.array([100_000] + [60] * 63)
    capped = bucket_batches(lengths, 64, np.random.default_rng(0), max_tokens=2**19)
    assert max(len(b) * lengths[b].max() for b in capped) <= 2**19
    assert sorted(np.concatenate(capped).tolist()) == list(range(64))
    # batches within the budget are exactly those of before
    short = np.arange(10, 74)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            bucket_batches(short, 16, np.random.default_rng(1), 2**19),
            bucket_batches(short, 16, np.random.default_rng(1)),
        )
    )


# ------------------------------------------------------------------------------------------
# 5. determinism


def test_same_seed_same_metrics_run_to_run(tiny_files, tmp_path, capsys):
    for name in ("a", "b"):
        assert (
            main(_train_cli(tiny_files, tmp_path / name, "--reg-strength", "0.005", "--reg-epochs", "2", "--seed", "7"))
            == 0
        )
    a, b = (TextClassifier.load(tmp_path / n) for n in "ab")
    same_result(a, b, atol=0)

"""predict's lines a person can read: --with-text, "known_tokens" (0: no word the model
knows, flagged with a warning), the same on the PyTorch path and in the API."""

import json

import numpy as np
import pytest

from sparse_rational.cli import main
from sparse_rational.pipeline import TextClassifier

TEXTS = ["great toaster , works well", "", "🙂🙂 👍", "zzqx qqzzv", 'terrible "quoted" {braces} \\ back']


@pytest.fixture
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    return path


def _predict(args, capsys):
    assert main(["predict", *args]) == 0
    out = capsys.readouterr()
    return [json.loads(line) for line in out.out.splitlines()], out.err


@pytest.mark.parametrize("impl", ["", "scan"])  # the PyTorch-free path, and the PyTorch model
def test_with_text_and_known_tokens(baseline, texts_file, capsys, monkeypatch, impl):
    if impl:
        monkeypatch.setenv("SPARSE_RATIONAL_IMPL", impl)
    rows, err = _predict(["--model", str(baseline), "--with-text", str(texts_file)], capsys)
    assert [r["text"] for r in rows] == TEXTS  # quotes, braces, backslashes and emoji survive
    known = TextClassifier.load(baseline).known_tokens(TEXTS).tolist()
    assert [r["known_tokens"] for r in rows] == known
    assert known[0] == 5 and known[1:4] == [0, 0, 0] and known[4] >= 3
    assert "sparse-rational: warning: 3 texts had no word the model knows" in err
    plain, _ = _predict(["--model", str(baseline), str(texts_file)], capsys)
    assert all("text" not in r for r in plain)
    assert [r["probabilities"] for r in plain] == [r["probabilities"] for r in rows]


def test_api_known_tokens_and_dicts(baseline):
    clf = TextClassifier.load(baseline)
    known = clf.known_tokens(TEXTS).tolist()
    assert known[:4] == [5, 0, 0, 0] and known[4] >= 3  # "terrible", "quoted", "back"; maybe the marks
    dicts = clf.predict_dicts(TEXTS)
    assert [d["known_tokens"] for d in dicts] == known
    probs = clf.predict_proba(TEXTS)
    for d, row in zip(dicts, probs):
        assert d["label"] == clf.classes[int(row.argmax())]
        np.testing.assert_allclose(list(d["probabilities"].values()), row, rtol=1e-6)


def test_a_model_with_every_state_pruned_predicts_the_prior(baseline, tmp_path, capsys):
    """The folded path must read a model whose structure is empty (it used to crash)."""
    import torch

    from sparse_rational.structure import prune

    clf = TextClassifier.load(baseline)
    with torch.no_grad():
        for p in (clf.model.wfsa.w, clf.model.wfsa.v, clf.model.wfsa.b):
            p.zero_()
    clf.model = prune(clf.model, 0.1).model
    assert clf.model.config.structure == ()
    clf.save(tmp_path / "empty")
    rows, _ = _predict(["--model", str(tmp_path / "empty"), str(_write(tmp_path, TEXTS))], capsys)
    prior = torch.softmax(clf.model.classifier.bias.detach(), 0).tolist()
    for r in rows:
        np.testing.assert_allclose(list(r["probabilities"].values()), prior, rtol=1e-5)


def _write(tmp_path, texts):
    path = tmp_path / "in.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def test_known_tokens_count_what_the_model_reads_on_both_paths(baseline, monkeypatch):
    """A text cut at max_tokens counts only the known words that were read, on the folded
    path and on the PyTorch path alike."""
    text = "great toaster works well " * 10  # 40 known words
    clf = TextClassifier.load(baseline)
    assert clf.folded() is not None
    fast = clf.predict_details([text], max_tokens=6)[1].tolist()
    monkeypatch.setenv("SPARSE_RATIONAL_IMPL", "scan")
    slow_clf = TextClassifier.load(baseline)
    assert slow_clf.folded() is None
    slow = slow_clf.predict_details([text], max_tokens=6)[1].tolist()
    # 6 tokens read: <s>, 4 words, </s>
    assert fast == slow == slow_clf.known_tokens([text], max_tokens=6).tolist() == [4]
    assert slow_clf.known_tokens([text], max_tokens=0).tolist() == [40]

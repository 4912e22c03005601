"""The README's code runs as written: the numpy scorer of an exported model equals predict."""

import re
from pathlib import Path

import numpy as np
import pytest

from sparse_rational.cli import main
from sparse_rational.data import tokenize
from sparse_rational.pipeline import TextClassifier

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_two_setup_commands_and_ci_uses_the_test_one():
    text = README.read_text()
    setup = text[text.index("## Set up") : text.index("## What it does")]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2
    assert "sparse-rational train --dataset amazon:kitchen" in commands[0]
    assert "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_readme_numpy_scorer_equals_predict(baseline, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(baseline), "--out", "mine.json"]) == 0
    block = next(b for b in python_blocks() if "mine.json" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert "works great" not in capsys.readouterr().err
    clf = TextClassifier.load(baseline)
    texts = ["Works great , I love it", "it broke and the company would not refund me", "<s> & </s>"]
    expected = clf.predict_proba(texts)
    for text, p in zip(texts, expected):
        got = namespace["probabilities"](tokenize(text))
        np.testing.assert_allclose([got[c] for c in clf.classes], p, atol=1e-5)


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_readme_numpy_scorer_handles_pooled_readouts(readout, tiny_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "--train",
                str(tiny_files["train"]),
                "--dev",
                str(tiny_files["dev"]),
                "--embeddings",
                "glove-6b-50d",
                "--patterns",
                "2x3,2x1",
                "--readout",
                readout,
                "--epochs",
                "2",
                "--quiet",
                "--threads",
                "1",
                "--out",
                "m",
            ]
        )
        == 0
    )
    assert main(["export", "--model", "m", "--out", "mine.json"]) == 0
    block = next(b for b in python_blocks() if "mine.json" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    clf = TextClassifier.load(tmp_path / "m")
    assert clf.model.config.readout == readout
    texts = ["Works great , I love it", "it broke and the company would not refund me"]
    for text, p in zip(texts, clf.predict_proba(texts)):
        got = namespace["probabilities"](tokenize(text))
        np.testing.assert_allclose([got[c] for c in clf.classes], p, atol=1e-5)

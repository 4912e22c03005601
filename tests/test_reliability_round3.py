"""Reliability, round three (issue 29): each case a hostile user tried, with a test named
after what the user expects. Items 1, 2, 10 and 14 are in test_model_folder_is_data.py,
test_outputs_over_inputs.py and test_sklearn_api.py / test_reliability_inputs.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_reliability_helpers import WORDS, task

from sparse_rational.checkpoint import checkpoint_dir
from sparse_rational.cli import main


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def onehot(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(WORDS))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(WORDS, eye)))
    return str(path)


def _tsv(path: str | os.PathLike, n: int, seed: int) -> str:
    Path(path).write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in task(n, seed)), encoding="utf-8")
    return os.fspath(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("data")
    return {"train": _tsv(root / "train.tsv", 64, 1), "dev": _tsv(root / "dev.tsv", 24, 2)}


def _train(onehot, train, dev, out, *extra) -> list[str]:
    return [
        "train",
        *("--train", train, "--dev", dev, "--embeddings", onehot, "--patterns", "2x2"),
        *("--epochs", "2", "--quiet", "--threads", "1", "--out", out, *extra),
    ]


@pytest.fixture(scope="module")
def model(onehot, files, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("models") / "m")
    assert main(_train(onehot, files["train"], files["dev"], out)) == 0
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("sparse-rational: error: "), err
    return lines[-1]


# -- 3. a file name that is not UTF-8 -----------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_recorded_losslessly_and_the_run_is_kept(
    onehot, files, tmp_path, capsysbinary
):
    train = os.fsdecode(os.fsencode(str(tmp_path)) + b"/tr\xffain.tsv")
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/O\xff9")
    _tsv(train, 64, 1)
    assert main(_train(onehot, train, files["dev"], out)) == 0
    metrics = json.loads(Path(out, "metrics.json").read_text(encoding="utf-8"))  # valid UTF-8 JSON
    assert os.fsencode(metrics["dataset"]["train"]) == os.fsencode(train)  # the very bytes
    assert "tr\\udcffain.tsv" in Path(out, "README.md").read_text(encoding="utf-8")
    assert not checkpoint_dir(out).exists()  # a finished run cleans up
    assert b"saved " + os.fsencode(out) in capsysbinary.readouterr().out  # printed as its own bytes
    text = Path(tmp_path, "texts.txt")
    text.write_text("w0 w2 w3\n", encoding="utf-8")
    assert main(["predict", "--model", out, str(text)]) == 0, capsysbinary.readouterr().err


def test_a_checkpoint_is_never_deleted_after_a_failure(onehot, files, tmp_path, monkeypatch, capsys):
    from sparse_rational.pipeline import TextClassifier

    def fail(self, path, *args, **kwargs):
        raise ValueError("saving failed")

    out = str(tmp_path / "m")
    with monkeypatch.context() as patch:
        patch.setattr(TextClassifier, "save", fail)
        with pytest.raises(ValueError):
            main(_train(onehot, files["train"], files["dev"], out))
    assert checkpoint_dir(out).is_dir()  # the finished training is still there
    assert "--resume" in capsys.readouterr().err
    assert main(_train(onehot, files["train"], files["dev"], out, "--resume")) == 0  # and finishes the run
    assert Path(out, "model.safetensors").is_file() and not checkpoint_dir(out).exists()

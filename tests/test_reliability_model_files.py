"""Reliability: model folders from strangers. Tampered, truncated or pickled model files
are refused with one line naming the file (at the API and at the command line);
metrics.json is informational only.

Split by topic from the former tests/test_reliability.py; shared helpers:
test_reliability_helpers.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from test_reliability_helpers import one_line, one_torch_thread, onehot_vectors, run_api

from sparse_rational.cli import main
from sparse_rational.errors import UserError
from sparse_rational.pipeline import TextClassifier

_one_thread = pytest.fixture(autouse=True, scope="module", name="_one_thread")(one_torch_thread)
onehot = pytest.fixture(scope="module", name="onehot")(onehot_vectors)


# ------------------------------------------------------------------------------------------
# 2. model folders from strangers


@pytest.fixture(scope="module")
def model_dir(onehot, tmp_path_factory) -> Path:
    clf = run_api(onehot, patterns="2x2,1x1", epochs=1)
    return clf.save(tmp_path_factory.mktemp("model") / "m")


def _edit_json(name, fn):
    def edit(path: Path):
        data = json.loads((path / name).read_text())
        fn(data)
        (path / name).write_text(json.dumps(data))

    return edit


def _edit_tensors(fn):
    def edit(path: Path):
        t = {k: v.clone() for k, v in load_file(path / "model.safetensors").items()}  # not mmapped
        fn(t)
        save_file(t, str(path / "model.safetensors"))

    return edit


def _write(name, data: bytes):
    return lambda path: (path / name).write_bytes(data)


def _pickle_weights(path: Path):
    tensors = {k: v.clone() for k, v in load_file(path / "model.safetensors").items()}  # not mmapped
    torch.save(tensors, path / "model.safetensors")


TAMPER = {
    "truncated weights": (
        lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:-7]),
        "model.safetensors",
    ),
    "garbage weights": (_write("model.safetensors", os.urandom(3000)), "model.safetensors"),
    "pickled weights": (_pickle_weights, "model.safetensors"),
    "empty weights": (_write("model.safetensors", b""), "model.safetensors"),
    "int weights": (_edit_tensors(lambda t: t.update({"wfsa.b": t["wfsa.b"].long()})), "model.safetensors"),
    "nan weights": (_edit_tensors(lambda t: t["wfsa.w"].__setitem__((0, 0), float("nan"))), "model.safetensors"),
    "missing tensor": (_edit_tensors(lambda t: t.pop("classifier.bias")), "model.safetensors"),
    "extra tensor": (_edit_tensors(lambda t: t.update({"evil": torch.zeros(1)})), "model.safetensors"),
    "wrong shape": (
        _edit_tensors(lambda t: t.update({"wfsa.w": t["wfsa.w"][:, :2].contiguous()})),
        "model.safetensors",
    ),
    "structure vs shapes": (
        _edit_json("config.json", lambda c: c["model"].update(structure=[2, 2, 2])),
        "model.safetensors",
    ),
    "huge structure": (_edit_json("config.json", lambda c: c["model"].update(structure=[10**9])), "config.json"),
    "huge embedding dim": (_edit_json("config.json", lambda c: c["model"].update(embedding_dim=10**9)), "config.json"),
    "embedding dim vs shapes": (
        _edit_json("config.json", lambda c: c["model"].update(embedding_dim=7)),
        "model.safetensors",
    ),
    "string dim": (_edit_json("config.json", lambda c: c["model"].update(embedding_dim="12")), "config.json"),
    "bad dropout": (_edit_json("config.json", lambda c: c["model"].update(dropout=3)), "config.json"),
    "unknown model field": (_edit_json("config.json", lambda c: c["model"].update(evil=1)), "config.json"),
    "vocab size": (_edit_json("config.json", lambda c: c["model"].update(vocab_size=5)), "vocab.txt"),
    "classes": (_edit_json("config.json", lambda c: c.update(classes=["a", "a"])), "config.json"),
    "classes count": (_edit_json("config.json", lambda c: c.update(classes=["a", "b", "c"])), "config.json"),
    "classes string": (_edit_json("config.json", lambda c: c.update(classes="ab")), "config.json"),
    "token settings": (_edit_json("config.json", lambda c: c.update(tokens={"lowercase": 1})), "config.json"),
    "embeddings not an object": (_edit_json("config.json", lambda c: c.update(embeddings=[1])), "config.json"),
    "foreign json": (_write("config.json", b'{"architectures": ["BertModel"], "hidden_size": 768}'), "config.json"),
    "json list": (_write("config.json", b"[1, 2]"), "config.json"),
    "deep json": (_write("config.json", b"[" * 100_000), "config.json"),
    "not utf-8 config": (_write("config.json", b"\xff\xfe{}"), "config.json"),
    "missing config": (lambda p: (p / "config.json").unlink(), "config.json"),
    "vocab not utf-8": (
        lambda p: (p / "vocab.txt").write_bytes((p / "vocab.txt").read_bytes() + b"\xff\n"),
        "vocab.txt",
    ),
    "vocab duplicate": (
        lambda p: (p / "vocab.txt").write_text(
            "\n".join(["<unk>"] * len((p / "vocab.txt").read_text().splitlines())) + "\n"
        ),
        "vocab.txt",
    ),
    "vocab truncated": (lambda p: (p / "vocab.txt").write_bytes((p / "vocab.txt").read_bytes()[:-3]), "vocab.txt"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampered_model_folder_is_a_one_line_error_naming_the_file(case, model_dir, tmp_path):
    edit, culprit = TAMPER[case]
    path = tmp_path / "m"
    shutil.copytree(model_dir, path)
    edit(path)
    with pytest.raises(UserError) as info:
        TextClassifier.load(path)
    one_line(info.value, str(path / culprit))


def test_tampered_model_through_the_cli_is_exit_2_one_line(model_dir, tmp_path, capsys):
    path = tmp_path / "m"
    shutil.copytree(model_dir, path)
    TAMPER["pickled weights"][0](path)
    assert main(["predict", "--model", str(path), str(tmp_path / "none.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors" in err


def test_metrics_json_is_informational(model_dir, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(model_dir, path)
    for content in (b"[1]", b"\xff", b"{" * 50_000):
        (path / "metrics.json").write_bytes(content)
        assert TextClassifier.load(path).metrics == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["config.json", "model.safetensors", "vocab.txt"]),
    how=st.sampled_from(["cut", "flip", "insert"]),
    pos=st.integers(0, 10**6),
    data=st.binary(min_size=1, max_size=8),
)
def test_fuzz_model_folder(model_dir, tmp_path_factory, name, how, pos, data):
    path = tmp_path_factory.mktemp("fz") / "m"
    shutil.copytree(model_dir, path)
    raw = (path / name).read_bytes()
    at = pos % (len(raw) + 1)
    if how == "cut":
        raw = raw[:at]
    elif how == "flip":
        raw = raw[:at] + bytes([(raw[at] if at < len(raw) else 0) ^ data[0] or 1]) + raw[at + 1 :]
    else:
        raw = raw[:at] + data + raw[at:]
    (path / name).write_bytes(raw)
    try:
        clf = TextClassifier.load(path)
    except UserError as exc:
        one_line(exc, str(path / name))
    else:
        probs = clf.predict_proba(["w0 w3 w4", ""])
        assert probs.shape == (2, len(clf.classes)) and np.isfinite(probs).all()

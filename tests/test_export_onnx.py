"""``export --format onnx`` (issue 30): onnxruntime gives ``predict``'s probabilities (1e-5)
on 1,000 real reviews for every readout and for tuned word vectors, padded batches of mixed
lengths read each row only to its length, and bad input is one line, exit 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import FAST, tiny_args

from sparse_rational.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sparse_rational.export import onnx_predict_proba  # noqa: E402
from sparse_rational.export.onnx_graph import OnnxClassifier  # noqa: E402
from sparse_rational.folded import load_folded  # noqa: E402


@pytest.fixture(scope="module")
def reviews(kitchen, tmp_path_factory):
    """1,000 real kitchen reviews (training split: long and short ones), as predict's input file."""
    texts = [ex.text for ex in kitchen.train[:1000]]
    assert len(texts) == 1000
    path = tmp_path_factory.mktemp("reviews") / "reviews.txt"
    path.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")
    return path


def _train(tiny_files, out, *extra) -> None:
    assert main(["train", *tiny_args(tiny_files), "--patterns", "3x2,2x1,1x3", "--out", str(out), *FAST, *extra]) == 0


@pytest.fixture(scope="module")
def models(tiny_files, tmp_path_factory):
    """Tiny kitchen models: one per readout, and one with tuned word vectors."""
    root = tmp_path_factory.mktemp("onnx_models")
    out = {}
    for readout in ("final", "mean", "max"):
        _train(tiny_files, root / readout, "--readout", readout, "--vectors", "frozen")
        out[readout] = root / readout
    _train(tiny_files, root / "tuned", "--readout", "max", "--vectors", "tuned")
    out["tuned"] = root / "tuned"
    return out


def _predict_cli(model, path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(path)]) == 0
    return [json.loads(line)["probabilities"] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("which", ["final", "mean", "max", "tuned"])
def test_onnx_equals_predict_on_1000_reviews(which, models, reviews, tmp_path, capsys):
    model = models[which]
    out = tmp_path / "exported"
    assert main(["export", "--model", str(model), "--format", "onnx", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "tokenizer.json"]
    settings = json.loads((out / "tokenizer.json").read_text())
    config = json.loads((model / "config.json").read_text())
    assert settings["readout"] == config["model"]["readout"] == (which if which != "tuned" else "max")
    assert settings["vocab"] == (model / "vocab.txt").read_text(encoding="utf-8").splitlines()
    want = _predict_cli(model, reviews, capsys)
    texts = reviews.read_text(encoding="utf-8").splitlines()
    got = onnx_predict_proba(out / "model.onnx", texts)
    assert len(got) == len(want) == 1000
    assert [list(g) for g in got] == [list(w) for w in want]  # the classes, in order
    diff = max(abs(g[c] - w[c]) for g, w in zip(got, want) for c in w)
    assert diff <= 1e-5, diff
    # not a constant answer: the test would catch a graph that ignored the text
    spread = np.ptp([w[settings["classes"][0]] for w in want])
    assert spread > 0.01


def test_tuned_rows_are_in_the_graph(models, tmp_path):
    """The tuned model's rows differ from GloVe's: an export that refolded GloVe would differ."""
    from safetensors.numpy import load_file

    tensors = load_file(str(models["tuned"] / "model.safetensors"))
    assert "embeddings" in tensors  # the tuned rows are saved in the model folder
    folded = load_folded(models["tuned"])
    out = tmp_path / "tuned"
    assert main(["export", "--model", str(models["tuned"]), "--format", "onnx", "--out", str(out)]) == 0
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(out / "model.onnx")).graph
    tables = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    n = folded.model.transitions
    vocab = len(folded.tokens)
    assert np.array_equal(tables["f_table"][:vocab, :n], folded.model._fu[:, :n])
    assert np.array_equal(tables["u_table"][:vocab, :n], folded.model._fu[:, n:])


def test_padded_batches_of_mixed_lengths(models, reviews, tmp_path):
    """Rows of very different lengths in one batch, padded with random ids (not zeros): each
    row equals the same document scored alone (no padding) and the compiled path."""
    out = tmp_path / "mean"
    assert main(["export", "--model", str(models["final"]), "--format", "onnx", "--out", str(out)]) == 0
    # an earlier export is replaced
    assert main(["export", "--model", str(models["mean"]), "--format", "onnx", "--out", str(out)]) == 0
    assert json.loads((out / "tokenizer.json").read_text())["readout"] == "mean"
    onnx_clf = OnnxClassifier(out / "model.onnx")
    folded = load_folded(models["mean"])
    texts = reviews.read_text(encoding="utf-8").splitlines()
    picks = [texts[0], "ok", texts[5] * 3, "broke after a week .", texts[9]]
    flat, lengths = folded.encode(picks)
    assert lengths.max() > 10 * lengths.min()
    rng = np.random.default_rng(0)
    padded = rng.integers(0, len(folded.tokens), (len(picks), int(lengths.max()))).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(len(picks)):
        padded[i, : lengths[i]] = flat[starts[i] : starts[i + 1]]
    batch = onnx_clf.run(padded, lengths)
    alone = np.concatenate(
        [onnx_clf.run(padded[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(len(picks))]
    )
    assert np.abs(batch - alone).max() <= 1e-6
    assert np.abs(batch - folded.model.proba(flat, lengths)).max() <= 1e-5
    # the pads matter if the mask is ignored: reading them changes the answer
    wrong = onnx_clf.run(padded, np.full(len(picks), padded.shape[1], np.int64))
    assert np.abs(wrong - batch).max() > 1e-4
    # and the batched helper (length-sorted batches) gives the same rows in input order
    assert np.abs(onnx_clf.proba_of_rows(flat, lengths, batch_size=2) - batch).max() <= 1e-6


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_bad_input_is_one_line(baseline, tmp_path, capsys, monkeypatch):
    err = _one_line_error(capsys, ["export", "--model", str(baseline), "--format", "xml", "--out", str(tmp_path / "x")])
    assert "--format" in err and "onnx" in err
    # an --out folder holding other files is never replaced
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    err = _one_line_error(capsys, ["export", "--model", str(baseline), "--format", "onnx", "--out", str(busy)])
    assert "refusing" in err and (busy / "notes.txt").read_text() == "mine"
    # the extra missing: one line naming the install command (no model is read)
    monkeypatch.setitem(sys.modules, "onnx", None)
    err = _one_line_error(
        capsys, ["export", "--model", str(baseline), "--format", "onnx", "--out", str(tmp_path / "o")]
    )
    assert "sparse-rational[onnx]" in err
    assert not (tmp_path / "o").exists()


def test_stacked_and_bidirectional_models_are_refused_in_one_line(tiny_files, tmp_path, capsys):
    deep = tmp_path / "deep"
    _train(tiny_files, deep, "--layers", "2", "--bidirectional", "--epochs", "1")
    err = _one_line_error(capsys, ["export", "--model", str(deep), "--format", "onnx", "--out", str(tmp_path / "o")])
    assert "2 stacked layers and a backward direction" in err and "--format json" in err
    assert not (tmp_path / "o").exists()


def test_a_missing_tokenizer_file_is_one_line(models, tmp_path):
    from sparse_rational.errors import UserError

    out = tmp_path / "e"
    assert main(["export", "--model", str(models["final"]), "--format", "onnx", "--out", str(out)]) == 0
    (out / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json"):
        onnx_predict_proba(out / "model.onnx", ["fine"])


def test_readme_onnx_example_runs(models, tmp_path, monkeypatch, capsys):
    """The README's onnxruntime block runs as written on an exported model."""
    import re

    from conftest import REPO

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(models["max"]), "--format", "onnx", "--out", "mine-onnx"]) == 0
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    block = next(b for b in blocks if "onnx_predict_proba" in b)
    capsys.readouterr()
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.count("'positive'") == 2 and printed.count("'negative'") == 2


def test_importing_the_export_package_loads_neither_torch_nor_onnx():
    import subprocess

    from conftest import REPO

    code = "import sys, sparse_rational.export; print('torch' in sys.modules, 'onnx' in sys.modules)"
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.split() == ["False", "False"], out.stderr

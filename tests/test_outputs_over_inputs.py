"""No command writes over its own inputs: an output path that is one of the command's input
files (the same file, also through a link), or that lies inside the model folder, is refused
in one line (exit 2) before any work, and every input is left byte for byte as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sparse_rational.cli import main
from sparse_rational.errors import UserError


@pytest.fixture
def inputs(baseline, tiny_files, tmp_path):
    """A copy of the baseline model folder (MX) and of the tiny train/test files."""
    model = tmp_path / "MX"
    shutil.copytree(baseline, model)
    train = Path(shutil.copy(tiny_files["train"], tmp_path / "train.tsv"))
    test = Path(shutil.copy(tiny_files["test"], tmp_path / "test.tsv"))
    return {"model": model, "train": train, "test": test}


def _snapshot(inputs) -> dict[str, bytes]:
    files = sorted(p for p in inputs["model"].rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in [*files, inputs["train"], inputs["test"]]}


def _refused(argv, option, inputs, capsys, monkeypatch, needle="") -> str:
    """Run ``argv``: exit 2, one stderr line naming ``option``, no model loaded, inputs unchanged."""
    from sparse_rational.pipeline import TextClassifier

    before = _snapshot(inputs)
    capsys.readouterr()

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(TextClassifier, "load", no_load)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("sparse-rational: error:"), err
    assert option in err[0] and needle in err[0], err
    assert _snapshot(inputs) == before
    return err[0]


def test_export_into_the_model_folder(inputs, capsys, monkeypatch):
    mx = inputs["model"]
    for out in (mx / "config.json", mx / "new.json", mx, mx / "sub" / ".." / "model.safetensors"):
        line = _refused(["export", "--model", str(mx), "--out", str(out)], "--out", inputs, capsys, monkeypatch)
        assert "model folder" in line


def test_export_through_a_link_into_the_model_folder(inputs, tmp_path, capsys, monkeypatch):
    mx = inputs["model"]
    link = tmp_path / "link.json"
    link.symlink_to(mx / "config.json")
    _refused(["export", "--model", str(mx), "--out", str(link)], "--out", inputs, capsys, monkeypatch)
    folder_link = tmp_path / "mx-link"
    folder_link.symlink_to(mx, target_is_directory=True)
    _refused(["export", "--model", str(mx), "--out", str(folder_link / "x.json")], "--out", inputs, capsys, monkeypatch)
    hard = tmp_path / "hard.json"  # a hard link to one of the model's files
    os.link(mx / "config.json", hard)
    _refused(["export", "--model", str(mx), "--out", str(hard)], "--out", inputs, capsys, monkeypatch, "model folder")


def test_demo_out_into_the_model_folder(inputs, capsys, monkeypatch):
    mx, train = inputs["model"], inputs["train"]
    argv = ["demo", "--model", str(mx), "--train", str(train), "--out", str(mx / "model.safetensors")]
    _refused(argv, "--out", inputs, capsys, monkeypatch, "model folder")
    argv = ["demo", "--model", str(mx), "--train", str(train), "--out", str(train)]
    _refused(argv, "--out", inputs, capsys, monkeypatch, str(train))


def test_explain_html_over_an_input(inputs, capsys, monkeypatch):
    mx, train = inputs["model"], inputs["train"]
    argv = ["explain", "--model", str(mx), "--train", str(train), "--html", str(mx / "vocab.txt")]
    _refused(argv, "--html", inputs, capsys, monkeypatch, "model folder")
    argv = ["explain", "--model", str(mx), "--train", str(train), "--html", str(train)]
    _refused(argv, "--html", inputs, capsys, monkeypatch)
    argv = ["explain", "--model", str(mx), "--train", str(train), "--dev", str(inputs["test"])]
    _refused([*argv, "--html", str(inputs["test"])], "--html", inputs, capsys, monkeypatch)


def test_evaluate_json_over_an_input(inputs, tmp_path, capsys, monkeypatch):
    mx, test = inputs["model"], inputs["test"]
    _refused(
        ["evaluate", "--model", str(mx), "--test", str(test), "--json", str(test)],
        "--json",
        inputs,
        capsys,
        monkeypatch,
    )
    link = tmp_path / "link.tsv"
    link.symlink_to(test)
    _refused(
        ["evaluate", "--model", str(mx), "--test", str(test), "--json", str(link)],
        "--json",
        inputs,
        capsys,
        monkeypatch,
    )
    hard = tmp_path / "hard.tsv"
    os.link(test, hard)
    _refused(
        ["evaluate", "--model", str(mx), "--test", str(hard), "--json", str(test)],
        "--json",
        inputs,
        capsys,
        monkeypatch,
    )
    argv = ["evaluate", "--model", str(mx), "--test", str(test), "--json", str(mx / "metrics.json")]
    _refused(argv, "--json", inputs, capsys, monkeypatch, "model folder")


def test_relative_paths_are_compared_resolved(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(
        ["evaluate", "--model", "MX", "--test", "test.tsv", "--json", "./MX/../test.tsv"],
        "--json",
        inputs,
        capsys,
        monkeypatch,
    )
    _refused(["export", "--model", "./MX/", "--out", "MX/config.json"], "--out", inputs, capsys, monkeypatch)


def test_other_outputs_are_written(inputs, tmp_path, capsys):
    mx, test = inputs["model"], inputs["test"]
    before = _snapshot(inputs)
    assert main(["export", "--model", str(mx), "--out", str(tmp_path / "model.json")]) == 0
    assert main(["evaluate", "--model", str(mx), "--test", str(test), "--json", str(tmp_path / "r.json")]) == 0
    assert main(["evaluate", "--model", str(mx), "--test", str(test), "--json", "-"]) == 0
    assert (tmp_path / "model.json").is_file() and (tmp_path / "r.json").is_file()
    assert _snapshot(inputs) == before


def test_check_output_helper(tmp_path):
    from sparse_rational.commandline import check_output

    model = tmp_path / "m"
    model.mkdir()
    data = tmp_path / "d.tsv"
    data.write_text("x\n")
    check_output(tmp_path / "out.json", "--out", inputs=[data], model_dir=model)  # fine
    check_output("-", "--json", inputs=[data], model_dir=model)  # stdout is no file
    check_output(None, "--json", inputs=[data], model_dir=model)
    check_output(tmp_path / "out.json", "--out", inputs=[None, "-"], model_dir=None)
    with pytest.raises(UserError, match=r"^--out .* is inside the model folder .*: it would overwrite the model$"):
        check_output(model / "x", "--out", model_dir=model)
    with pytest.raises(UserError, match=r"^--json .*d\.tsv is the input file .*d\.tsv"):
        check_output(data, "--json", inputs=[data])
    with pytest.raises(UserError, match="is the input file"):  # not yet there, same resolved path
        check_output(tmp_path / "new.tsv", "--json", inputs=[tmp_path / "x" / ".." / "new.tsv"])

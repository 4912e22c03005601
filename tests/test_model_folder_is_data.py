"""A model folder is data, never a pointer that is followed: ``demo`` (and ``serve``'s page)
read Table 1's training texts only from ``--dataset``/``--train`` given on the command line,
never from the ``"dataset"`` a model folder's ``metrics.json`` records (a local file, a
relative path, or a dataset that would be downloaded)."""

from __future__ import annotations

import json
import shutil

import pytest

import sparse_rational.data as data
from sparse_rational.cli import main
from sparse_rational.web.tables import NEEDS_DOCUMENTS

SECRET = "quokkasecretword"


@pytest.fixture
def reads(monkeypatch):
    """Every call of the data loaders Table 1 uses, recorded; ``load_dataset`` never runs
    (it could download), ``load_files`` does."""
    from sparse_rational.errors import UserError

    calls = []
    real_files = data.load_files

    def load_dataset(*args, **kwargs):
        calls.append(("load_dataset", args))
        raise UserError("load_dataset blocked by the test")

    def load_files(*args, **kwargs):
        calls.append(("load_files", args))
        return real_files(*args, **kwargs)

    monkeypatch.setattr(data, "load_dataset", load_dataset)
    monkeypatch.setattr(data, "load_files", load_files)
    return calls


def _model_recording(baseline, tmp_path, dataset) -> str:
    folder = tmp_path / "model"
    shutil.copytree(baseline, folder)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    metrics["dataset"] = dataset
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return str(folder)


def _private_tsv(path):
    lines = [f"{'positive' if k % 2 else 'negative'}\t{SECRET} private text number {k} great\n" for k in range(8)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("relative", [False, True])
def test_demo_does_not_read_a_file_the_model_folder_names(baseline, tmp_path, monkeypatch, reads, capsys, relative):
    private = _private_tsv(tmp_path / "private.tsv")
    if relative:  # a recorded relative path was resolved against the current folder
        monkeypatch.chdir(tmp_path)
    model = _model_recording(baseline, tmp_path, {"train": "private.tsv" if relative else str(private)})
    page = tmp_path / "page.html"
    assert main(["demo", "--model", model, "--out", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert SECRET not in html
    assert NEEDS_DOCUMENTS in html  # Table 1 left out, with the note saying to give --dataset or --train
    assert reads == []
    assert SECRET not in capsys.readouterr().err


def test_demo_does_not_load_or_download_a_dataset_the_model_folder_names(baseline, tmp_path, reads):
    model = _model_recording(baseline, tmp_path, "hatn:books")
    page = tmp_path / "page.html"
    assert main(["demo", "--model", model, "--data-dir", str(tmp_path / "empty"), "--out", str(page)]) == 0
    assert reads == []  # nothing loaded, nothing downloaded (no --allow-download exists on demo)
    assert NEEDS_DOCUMENTS in page.read_text(encoding="utf-8")


def test_demo_reads_the_training_file_given_on_the_command_line(baseline, tmp_path, reads):
    private = _private_tsv(tmp_path / "private.tsv")
    model = _model_recording(baseline, tmp_path, "hatn:books")
    page = tmp_path / "page.html"
    assert main(["demo", "--model", model, "--train", str(private), "--out", str(page)]) == 0
    assert [name for name, _ in reads] == ["load_files"]
    html = page.read_text(encoding="utf-8")
    assert NEEDS_DOCUMENTS not in html and "Pattern 1:" in html


def test_serve_page_leaves_table_one_out_without_options(baseline, tmp_path, reads):
    from sparse_rational.web.tables import TableSource, table_for

    pytest.importorskip("torch")
    from sparse_rational.pipeline import TextClassifier

    private = _private_tsv(tmp_path / "private.tsv")
    clf = TextClassifier.load(_model_recording(baseline, tmp_path, {"train": str(private)}))
    assert table_for(TableSource(), clf) == (None, NEEDS_DOCUMENTS)
    assert reads == []

"""Scoring many files with Ray Data (sparse_rational/scoring.py): a local Ray instance with 2
scoring workers scores a multi-file input exactly as `predict` does, in input order; bad
arguments are one-line errors, before Ray starts; an address nobody answers at is one line."""

import json
import socket
import time

import pytest

from sparse_rational.cli import main
from sparse_rational.errors import ParameterError, UserError

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparse-rational[ray]'")
from sparse_rational.scoring import score_files  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _predicted(model, texts, tmp_path, capsys):
    """`predict`'s probabilities of every text, through the command line."""
    src = tmp_path / "all.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(src)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_two_worker_cluster_scores_several_files_as_predict_does_in_order(baseline, kitchen, tmp_path, capsys):
    texts = [ex.text.replace("\n", " ") for ex in kitchen.test[:300]]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(3):  # three files of 100 lines
        (inputs / f"part{k}.txt").write_text("".join(t + "\n" for t in texts[k * 100 : (k + 1) * 100]), "utf-8")
    out = tmp_path / "scored"
    # a local Ray instance (3 CPUs: 2 scoring actors, one model load each, and the reads)
    n = score_files(baseline, [str(inputs)], out, workers=2, batch_size=64)
    assert n == len(texts)
    assert not ray.is_initialized()  # started, then shut down
    rows = [json.loads(line) for f in sorted(out.glob("*.json")) for line in f.read_text("utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts  # input order, across files
    expected = _predicted(baseline, texts, tmp_path, capsys)
    for row, want in zip(rows, expected):
        assert row["label"] == want["label"]
        for c, p in want["probabilities"].items():
            assert row[f"p_{c}"] == pytest.approx(p, abs=1e-6)


def test_parquet_in_and_out_with_a_named_text_column(baseline, kitchen, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [ex.text for ex in kitchen.test[:40]]
    for k in range(2):
        part = texts[k * 20 : (k + 1) * 20]
        pq.write_table(pa.table({"review": part, "id": list(range(k * 20, k * 20 + 20))}), tmp_path / f"p{k}.parquet")
    out = tmp_path / "scored"
    assert score_files(baseline, [str(tmp_path / "p*.parquet")], out, workers=1, text_column="review", output="parquet")
    table = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("*.parquet"))])
    assert table.column("id").to_pylist() == list(range(40))
    expected = _predicted(baseline, [t.replace("\n", " ") for t in texts], tmp_path, capsys)
    assert table.column("label").to_pylist() == [e["label"] for e in expected]


def test_bad_arguments_are_one_line_errors_before_ray_starts(baseline, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("works great\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="workers"):
        score_files(baseline, [str(src)], tmp_path / "o", workers=0)
    with pytest.raises(ParameterError, match="workers"):
        score_files(baseline, [str(src)], tmp_path / "o", workers=257)
    with pytest.raises(ParameterError, match="inputs.*no such file"):
        score_files(baseline, [str(tmp_path / "missing*.txt")], tmp_path / "o")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    with pytest.raises(ParameterError, match="mixes formats"):
        score_files(baseline, [str(src), str(tmp_path / "b.parquet")], tmp_path / "o")
    with pytest.raises(ParameterError, match="output"):
        score_files(baseline, [str(src)], tmp_path / "o", output="csv")
    with pytest.raises(ParameterError, match="model_dir"):
        score_files(tmp_path / "nope", [str(src)], tmp_path / "o")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    with pytest.raises(ParameterError, match="out_dir.*not an empty folder"):
        score_files(baseline, [str(src)], taken)
    assert (taken / "x").read_text() == "keep me"
    assert not ray.is_initialized()


def test_an_unreachable_address_is_one_line_within_30_seconds(baseline, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("works great\n", encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"address 127\.0\.0\.1:\d+: cannot connect") as err:
        score_files(baseline, [str(src)], tmp_path / "o", address=f"127.0.0.1:{_free_port()}")
    assert time.monotonic() - start < 30
    assert "\n" not in str(err.value)
    assert not ray.is_initialized()


def test_a_line_that_is_not_utf8_names_its_file_and_line(baseline, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("works great\n", encoding="utf-8")
    (tmp_path / "in" / "b.txt").write_bytes(b"fine\n\xff broke\n")
    with pytest.raises(UserError, match=r"b\.txt:2: not UTF-8 text$"):
        score_files(baseline, [str(tmp_path / "in")], tmp_path / "o", workers=1)
    assert not ray.is_initialized()

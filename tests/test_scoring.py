"""Scoring many files with Ray Data (sparse_rational/scoring.py, and `predict --ray-address`,
its command line): a local Ray instance with 2 scoring workers scores a multi-file input
exactly as plain `predict` does, in input order; bad arguments are one-line errors, before Ray
starts; an address nobody answers at is one line. Ray starts three times in this file (slow):
the two-worker run, the Parquet run and the run that meets a line that is not UTF-8."""

import json
import re
import socket
import time

import pytest

from sparse_rational import cli
from sparse_rational.cli import main
from sparse_rational.errors import ParameterError, UserError

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparse-rational[ray]'")
from sparse_rational import scoring  # noqa: E402
from sparse_rational.scoring import score_files  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _predicted(model, files, capsys):
    """`predict`'s JSON line of every line of ``files``, file by file, through the command line."""
    rows = []
    for f in files:
        capsys.readouterr()
        assert main(["predict", "--model", str(model), str(f)]) == 0
        rows += [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return rows


def _summary(err: str) -> str:
    """The last line predict --ray-address writes to stderr (Ray's own lines come before it)."""
    return err.strip().splitlines()[-1]


def test_predict_on_a_two_worker_ray_scores_several_files_as_predict_does_in_order(baseline, kitchen, tmp_path, capsys):
    texts = [ex.text.replace("\n", " ") for ex in kitchen.test[:180]]
    inputs = tmp_path / "in"
    inputs.mkdir()
    parts = [inputs / f"part{k}.txt" for k in range(3)]
    for k, part in enumerate(parts):  # three files of 60 lines
        part.write_text("".join(t + "\n" for t in texts[k * 60 : (k + 1) * 60]), "utf-8")
    out = tmp_path / "scored"
    capsys.readouterr()
    # a local Ray instance (3 CPUs: 2 scoring actors, one model load each, and the reads): score_files
    argv = ["predict", "--model", str(baseline), "--ray-address", "local", "--workers", "2", "--batch-size", "64"]
    assert main([*argv, "--out", str(out), str(inputs)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(
        rf"sparse-rational: scored 180 rows of 3 files in \d+\.\ds into {re.escape(str(out))} \(jsonl\)",
        _summary(captured.err),
    ), captured.err
    assert not ray.is_initialized()  # started, then shut down
    rows = [json.loads(line) for f in sorted(out.glob("*.json")) for line in f.read_text("utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts  # input order, across files
    expected = _predicted(baseline, parts, capsys)
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert row["label"] == want["label"]
        assert set(row) == {"text", "label", *(f"p_{c}" for c in want["probabilities"])}
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
    capsys.readouterr()
    argv = ["predict", "--model", str(baseline), "--ray-address", "local", "--workers", "1", "--out", str(out)]
    assert main([*argv, "--format", "parquet", "--text-column", "review", str(tmp_path / "p*.parquet")]) == 0
    assert re.match(r"sparse-rational: scored 40 rows of 2 files in .* \(parquet\)$", _summary(capsys.readouterr().err))
    table = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("*.parquet"))])
    assert table.column("id").to_pylist() == list(range(40))
    flat = tmp_path / "flat.txt"  # predict reads one text per line
    flat.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    expected = _predicted(baseline, [flat], capsys)
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


def _one_line_error(capsys, argv) -> str:
    """The one stderr line of ``sparse-rational ARGV``, which fails with exit status 2 at once
    (no model scored, no Ray started), less its prefix."""
    capsys.readouterr()
    start = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - start < 10  # a Ray start takes longer
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("sparse-rational: error: ") and captured.out == "", captured
    assert not ray.is_initialized()
    return line.removeprefix("sparse-rational: error: ")


def test_predict_ray_arguments_are_one_line_errors_before_ray_starts(baseline, tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("works great\n", encoding="utf-8")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    (tmp_path / "c.csv").write_text("text\nworks great\n", encoding="utf-8")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    model = ["predict", "--model", str(baseline)]
    ray_ = [*model, "--ray-address", "local"]
    out = ["--out", str(tmp_path / "o")]
    cases = {
        # the inputs
        (*ray_, *out, str(tmp_path / "missing.txt")): f"predict: {tmp_path / 'missing.txt'}: no such file",
        (*ray_, *out, str(tmp_path / "nothing*.txt")): f"predict: {tmp_path / 'nothing*.txt'}: no such file",
        (*ray_, *out, str(tmp_path / "c.csv")): f"predict: {tmp_path / 'c.csv'}: expected one of .txt, .jsonl",
        (*ray_, *out, str(src), str(tmp_path / "b.parquet")): "predict: mixes formats",
        (*ray_, *out): "predict --ray-address: give the input files (standard input is not read)",
        (*ray_, *out, "-"): "predict --ray-address: give the input files (standard input is not read)",
        # the output folder
        (*ray_, str(src)): "predict --ray-address: give --out DIR, the output folder",
        (*ray_, "--out", str(taken), str(src)): f"--out: {taken}: exists and is not an empty folder",
        (*ray_, "--out", str(src), str(src)): f"--out {src} is the input file {src}",
        (*ray_, "--out", str(baseline / "scored"), str(src)): "--out " + str(baseline / "scored") + " is inside",
        (*ray_, *out, "--format", "csv", str(src)): "argument --format: invalid choice: 'csv'",
        # the scorers
        (*ray_, *out, "--workers", "0", str(src)): "argument --workers: expected an integer from 1 to 256, got '0'",
        (*ray_, *out, "--workers", "257", str(src)): "argument --workers: expected an integer from 1 to 256",
        ("predict", "--model", str(tmp_path / "nope"), "--ray-address", "local", *out, str(src)): (
            f"--model: {tmp_path / 'nope'}: not a model folder"
        ),
        (*model, "--ray-address", " ", *out, str(src)): "argument --ray-address: expected HOST:PORT",
        # plain predict's options that Ray scoring does not honour
        (*ray_, *out, "--with-text", str(src)): "predict --ray-address: --with-text does not apply",
        (*ray_, *out, "--threads", "2", str(src)): "predict --ray-address: --threads does not apply",
        (*ray_, *out, "--allow-download", str(src)): "predict --ray-address: --allow-download does not apply",
        (*ray_, *out, "--device", "cuda", str(src)): "predict --ray-address: --device cuda does not apply",
        # Ray scoring's options without --ray-address
        (*model, *out, str(src)): "predict: --out goes with --ray-address",
        (*model, "--format", "parquet", str(src)): "predict: --format goes with --ray-address",
        (*model, "--text-column", "review", str(src)): "predict: --text-column goes with --ray-address",
        (*model, str(src), str(src)): "predict: one input (a file or -); several files are scored with --ray-address",
    }
    for argv, start in cases.items():
        line = _one_line_error(capsys, list(argv))
        assert line.startswith(start), (argv, line)
    assert (taken / "x").read_text() == "keep me" and not (tmp_path / "o").exists()
    assert cli.RAY_OUTPUTS == scoring.OUTPUTS  # --format's choices, kept without importing scoring


def test_an_unreachable_address_is_one_line_within_30_seconds(baseline, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("works great\n", encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"address 127\.0\.0\.1:\d+: cannot connect") as err:
        score_files(baseline, [str(src)], tmp_path / "o", address=f"127.0.0.1:{_free_port()}")
    assert time.monotonic() - start < 30
    assert "\n" not in str(err.value)
    assert not ray.is_initialized()


def test_predict_with_an_unreachable_ray_address_is_one_line_within_30_seconds(baseline, tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("works great\n", encoding="utf-8")
    argv = ["predict", "--model", str(baseline), "--out", str(tmp_path / "o"), str(src), "--ray-address"]
    address = f"127.0.0.1:{_free_port()}"
    assert re.fullmatch(rf"--ray-address {address}: cannot connect \(.+\)", _one_line_error(capsys, [*argv, address]))
    line = _one_line_error(capsys, [*argv, "no-port"])
    assert line == "--ray-address no-port: expected HOST:PORT, ray://HOST:PORT or auto"
    assert not (tmp_path / "o").exists()


def test_a_line_that_is_not_utf8_names_its_file_and_line(baseline, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("works great\n", encoding="utf-8")
    (tmp_path / "in" / "b.txt").write_bytes(b"fine\n\xff broke\n")
    with pytest.raises(UserError, match=r"b\.txt:2: not UTF-8 text$"):
        score_files(baseline, [str(tmp_path / "in")], tmp_path / "o", workers=1)
    assert not ray.is_initialized()


def test_a_missing_fsspec_http_filesystem_is_missing_for_every_thread():
    """Ray Data lists the inputs from several threads, each importing fsspec's HTTP filesystem,
    and catches only ModuleNotFoundError; without aiohttp, a thread could see the module half
    imported ("cannot import name"). Once marked missing, every import says ModuleNotFoundError."""
    import importlib.util
    import sys
    import threading

    from sparse_rational.scoring import _import_fsspec_http

    if importlib.util.find_spec("aiohttp") is not None or importlib.util.find_spec("fsspec") is None:
        pytest.skip("fsspec's HTTP filesystem imports here (aiohttp installed), or fsspec is missing")
    saved = sys.modules.pop("fsspec.implementations.http", "absent")
    try:
        _import_fsspec_http()
        assert sys.modules["fsspec.implementations.http"] is None  # marked missing: never imported again
        errors: list[BaseException] = []

        def attempt() -> None:
            try:
                from fsspec.implementations.http import HTTPFileSystem  # noqa: F401
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 8 and all(type(e) is ModuleNotFoundError for e in errors), errors
    finally:
        sys.modules.pop("fsspec.implementations.http", None)
        if saved != "absent":
            sys.modules["fsspec.implementations.http"] = saved

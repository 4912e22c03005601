"""``predict --workers N`` (issue 30): the same lines in input order as one process; a worker
killed with SIGKILL ends the run in one line naming how many whole lines were written;
Ctrl-C and a killed parent leave no worker behind; bad values are one line, exit 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparse_rational.cli import main

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")


@pytest.fixture(scope="module")
def lines(kitchen) -> list[str]:
    """1,800 real reviews (one per line)."""
    texts = [" ".join(ex.text.split()) for ex in [*kitchen.train, *kitchen.dev]][:1800]
    assert len(texts) == 1800
    return texts


def _predict(model, *extra, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SPARSE_RATIONAL_IMPL", None)
    cmd = [sys.executable, "-m", "sparse_rational.cli", "predict", "--model", str(model), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kwargs)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for_children(pid: int, count: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _children(pid)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} workers of {pid} did not start")


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Every pid has exited (a zombie, not yet reaped, counts as gone: it runs nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_workers_write_the_lines_of_one_process_in_input_order(baseline, lines, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    outs = {}
    for workers in ("1", "3"):
        proc = _predict(baseline, str(src), "--batch-size", "64", "--with-text", "--workers", workers)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outs[workers] = out
    assert outs["3"] == outs["1"]
    rows = [json.loads(line) for line in outs["3"].decode().splitlines()]
    assert [r["text"] for r in rows] == lines  # in input order, the batches of 3 workers interleaved


def test_standard_input_from_a_file_part_read_is_read_by_offset_from_where_it_stands(baseline, lines, tmp_path):
    """``predict --workers 2 < file`` with the first line already read by someone else: the
    workers read their lines from standard input's file by offset, from where it stood;
    a pipe's lines (the test above, the tests below) are sent to them."""
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in lines[:300]), encoding="utf-8")
    with open(src, "rb") as fh:
        fh.readline()
        os.lseek(fh.fileno(), fh.tell(), os.SEEK_SET)  # where a shell's `read` would leave it
        proc = _predict(baseline, "-", "--batch-size", "32", "--with-text", "--workers", "2", stdin=fh)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [json.loads(line)["text"] for line in out.decode().splitlines()] == lines[1:300]


def test_a_killed_worker_ends_the_run_with_whole_lines_and_their_count(baseline, lines):
    proc = _predict(baseline, "-", "--batch-size", "50", "--workers", "2", stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    more = threading.Event()

    def feed() -> None:
        try:
            proc.stdin.write("".join(t + "\n" for t in lines[:600]).encode())
            proc.stdin.flush()
            more.wait(60)
            for t in lines[600:] * 5:
                proc.stdin.write((t + "\n").encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):  # the command ended: it stops reading
            pass

    writer = threading.Thread(target=feed)
    writer.start()
    first = [proc.stdout.readline() for _ in range(100)]  # the run is under way: lines come out
    workers = _wait_for_children(proc.pid, 2)
    os.kill(workers[1], signal.SIGKILL)
    more.set()
    rest = proc.stdout.read()
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.wait(timeout=60)
    writer.join(timeout=60)
    out = b"".join(first) + rest
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert "was killed by SIGKILL" in err
    written = int(re.search(r"(\d+) lines were written", err).group(1))
    assert out.endswith(b"\n") and out.count(b"\n") == written
    assert 100 <= written < len(lines) * 5
    for line in out.decode().splitlines():  # every line whole
        assert set(json.loads(line)) == {"label", "probabilities", "known_tokens"}
    assert _gone(workers)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "parent killed"])
def test_no_worker_outlives_the_command(baseline, how):
    proc = _predict(baseline, "-", "--workers", "3", stdin=subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(b"works great\n")  # started, then waiting for more input
    proc.stdin.flush()
    workers = _wait_for_children(proc.pid, 3)
    if how == "ctrl-c":  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "sigterm":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    expected = {"ctrl-c": 130, "sigterm": 128 + 15, "parent killed": -9}[how]
    assert proc.returncode == expected, err
    if how != "parent killed":
        assert len(err.decode().strip().splitlines()) == 1, err
    assert _gone(workers), f"workers left behind after {how}"


@pytest.mark.parametrize("value", ["0", "-1", "257", "two"])
def test_bad_worker_counts_are_one_line(baseline, value, capsys):
    assert main(["predict", "--model", str(baseline), "--workers", value, os.devnull]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--workers" in err and "1 to 256" in err


def test_workers_and_threads_together_are_one_line(baseline, capsys):
    assert main(["predict", "--model", str(baseline), "--workers", "2", "--threads", "2", os.devnull]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--workers" in err


def test_workers_split_lines_and_name_bad_bytes_as_one_process_does(baseline, tmp_path):
    """Carriage returns, empty lines, non-ASCII text and a last line with no newline come out
    the same; a line that is not UTF-8 is named by its number (exit 2), after every line
    before it (batches of 2: the fifth line is not a batch's first)."""
    src = tmp_path / "odd.txt"
    src.write_bytes("works great\r\n\n\u00e9t\u00e9 parfait , love it\nbroke\n \n\u2019s ok".encode())
    outs = {}
    for workers in ("1", "2"):
        proc = _predict(baseline, str(src), "--batch-size", "2", "--with-text", "--workers", workers)
        outs[workers], err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert outs["2"] == outs["1"] and outs["1"].count(b"\n") == 6
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one\ntwo\nthree\nfour\nfive\n\xff six\nseven\n")
    for workers, threads in (("1", "1"), ("1", "2"), ("2", "1")):
        proc = _predict(baseline, str(bad), "--batch-size", "2", "--workers", workers, "--threads", threads)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert err.decode().strip() == f"sparse-rational: error: {bad}:6: not UTF-8 text"
        assert out.count(b"\n") == 5  # every line before it


def test_evaluate_in_workers_reports_what_one_process_reports(baseline, kitchen, tmp_path, monkeypatch, capsys):
    """``evaluate --workers 3`` (batches of 50 texts, so that every worker scores several):
    the same accuracy, per-class figures and confusion matrix as the PyTorch model in one
    process, on 600 real reviews and 3 with a label the model does not know (a warning in
    both, counted as errors in both)."""
    from conftest import write_tsv

    from sparse_rational import cli
    from sparse_rational.data import Example
    from sparse_rational.folded import load_folded

    rows = [*kitchen.test, *kitchen.dev, *kitchen.train][:620]
    fast = load_folded(baseline)
    assert fast is not None
    probs = fast.predict_proba([ex.text for ex in rows])
    rows = [ex for ex, p in zip(rows, probs) if abs(p[0] - p[1]) > 1e-4][
        :600
    ]  # no near-tie: the two paths agree to 1e-5
    rows += [Example(text=ex.text, label="neutral") for ex in rows[:3]]
    test = write_tsv(tmp_path / "test.tsv", rows)
    monkeypatch.setattr(cli._WorkerEvaluator, "BATCH", 50)
    reports, errs = {}, {}
    for workers in ("1", "3"):
        out = tmp_path / f"eval{workers}.json"
        argv = ["evaluate", "--model", str(baseline), "--test", str(test), "--json", str(out), "--workers", workers]
        assert main([*argv, "--contrast", "kitchen"]) == 0
        reports[workers] = json.loads(out.read_text())
        errs[workers] = capsys.readouterr().err
    one, three = reports["1"], reports["3"]
    assert one.pop("model") == three.pop("model")
    assert three == one
    assert one["examples"] == 603 and one["unseen_labels"] == 3 and 0 < one["accuracy"] < 1
    assert one["contrast"]["n"] == 400
    assert all("3 of 603 examples have labels the model does not know" in e for e in errs.values())


def test_evaluate_workers_refuses_what_needs_pytorch_in_one_line(baseline, tiny_files, monkeypatch, capsys):
    argv = ["evaluate", "--model", str(baseline), "--test", str(tiny_files["test"]), "--workers", "2"]
    assert main([*argv, "--threads", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--workers or --threads" in err
    monkeypatch.setenv("SPARSE_RATIONAL_IMPL", "python")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs PyTorch: use --threads" in err
    for value in ("0", "257"):
        assert main([*argv[:-1], value]) == 2
        assert "--workers" in capsys.readouterr().err

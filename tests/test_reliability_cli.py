"""Reliability, round two, at the command line: output folders are never lost, one run per
output, a resumed run refuses changed vectors, hostile options and streams are one-line
errors, a closed pipe or SIGTERM ends cleanly, model files are bounded before they are read.

Training runs here use tiny synthetic TSV files and one-hot vectors, so each takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparse_rational import checkpoint as checkpoint_module
from sparse_rational.checkpoint import Checkpointer, checkpoint_dir
from sparse_rational.cli import main
from sparse_rational.data import Example, Splits
from sparse_rational.errors import UserError
from sparse_rational.ops import ENV_VAR as SPARSE_RATIONAL_IMPL
from sparse_rational.pipeline import TextClassifier, train_text_classifier
from sparse_rational.train import TrainConfig

WORDS = [f"w{i}" for i in range(12)]


def _docs(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        label = int(rng.random() < 0.5)
        words = list(rng.choice(WORDS[2:], size=rng.integers(4, 9)))
        words.insert(int(rng.integers(0, len(words) + 1)), "w0" if label else "w1")
        lines.append(f"{'pos' if label else 'neg'}\t{' '.join(words)}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    eye = np.eye(len(WORDS))
    (root / "vec.txt").write_text(
        "".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(WORDS, eye))
    )
    (root / "train.tsv").write_text(_docs(96, 1))
    (root / "dev.tsv").write_text(_docs(32, 2))
    (root / "test.tsv").write_text(_docs(32, 3))
    return {k: root / f"{k}.{'txt' if k == 'vec' else 'tsv'}" for k in ("vec", "train", "dev", "test")}


def train_args(files, out, *extra) -> list[str]:
    return [
        "train",
        "--train",
        str(files["train"]),
        "--dev",
        str(files["dev"]),
        "--test",
        str(files["test"]),
        "--embeddings",
        str(files["vec"]),
        "--patterns",
        "3x2",
        "--epochs",
        "3",
        "--patience",
        "3",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def run(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def cli(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "sparse_rational.cli", *args]


def forbid_training(monkeypatch, data_too: bool = False) -> None:
    """Make training (and, with ``data_too``, reading the data files) fail the test if a command gets
    that far: a refusal "before training" is then checked by what ran, not by how long it took."""
    import sparse_rational.cli as cli_module
    import sparse_rational.pipeline as pipeline
    import sparse_rational.tuning as tuning

    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"{name} was called: the command did not stop before it")

        return call

    for name in ("train_text_classifier", "train_structure_path"):
        monkeypatch.setattr(pipeline, name, forbidden(name))
    monkeypatch.setattr(tuning, "tune_text_classifier", forbidden("tune_text_classifier"))
    if data_too:
        monkeypatch.setattr(cli_module, "_splits_for", forbidden("reading the data (_splits_for)"))


@pytest.fixture(scope="module")
def model(files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m") / "model"
    assert main(train_args(files, out)) == 0
    return out


# -- 1. output folders ------------------------------------------------------------------------


def test_a_project_folder_with_a_config_json_is_never_replaced(files, tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "config.json").write_text('{"name": "app"}')
    (proj / "notes.txt").write_text("x")
    code, _, err = run(train_args(files, proj), capsys)
    assert code == 2
    one_line(err, "proj", "not a sparse-rational model folder")
    assert (proj / "notes.txt").read_text() == "x" and (proj / "src").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no checkpoint, no temporary folder


def test_a_model_folder_with_a_foreign_file_is_not_replaced(model, files, tmp_path, capsys):
    import shutil

    out = tmp_path / "m"
    shutil.copytree(model, out)
    (out / "README.md").write_text("my notes")
    code, _, err = run(train_args(files, out), capsys)
    assert code == 2 and "refusing" in err
    assert (out / "README.md").read_text() == "my notes"


def test_out_dot_is_refused_before_training(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"name": "app"}')
    code, _, err = run(train_args(files, "."), capsys)
    assert code == 2
    one_line(err, "current folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no ..<random>.tmp left behind


def test_an_earlier_model_folder_is_replaced_and_said(model, files, tmp_path, capsys):
    import shutil

    out = tmp_path / "m"
    shutil.copytree(model, out)
    code, _, err = run(train_args(files, out, "--seed", "5"), capsys)
    assert code == 0, err
    assert "replaced the earlier model folder" in err
    assert json.loads((out / "metrics.json").read_text())["hyperparameters"]["seed"] == 5


def test_model_files_get_the_usual_permissions(model):
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "model.safetensors", "vocab.txt", "metrics.json"):
        assert (model / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_an_unwritable_out_fails_before_training(files, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    forbid_training(monkeypatch)
    code, _, err = run(train_args(files, tmp_path / "afile" / "out", "--epochs", "200", "--patience", "200"), capsys)
    assert code == 1
    one_line(err, "afile")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no checkpoint, no temporary folder


def test_an_out_that_is_a_symlink_loop_fails_before_training(files, tmp_path, capsys, monkeypatch):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # saving renamed the model folder onto it at the end: 'Not a directory', exit 1
    forbid_training(monkeypatch)
    code, _, err = run(train_args(files, loop), capsys)
    assert code == 2
    one_line(err, str(loop), "loops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]  # no checkpoint, no temporary folder


def test_out_the_teacher_folder_is_refused_before_training(model, files, tmp_path, capsys, monkeypatch):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(model, teacher)
    before = {p.name: p.read_bytes() for p in teacher.iterdir()}
    forbid_training(monkeypatch)
    code, _, err = run(train_args(files, teacher, "--teacher", teacher), capsys)  # was: the student replaced it
    assert code == 2
    one_line(err, f"--out {teacher}", "overwrite")
    assert {p.name: p.read_bytes() for p in teacher.iterdir()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_fails_before_training(files, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run(train_args(files, ro / "out", "--epochs", "200", "--patience", "200"), capsys)
    finally:
        ro.chmod(0o755)
    assert code == 1
    one_line(err, str(ro))


@pytest.mark.parametrize("command", ["export", "evaluate --json", "demo"])
def test_an_output_that_is_a_fifo_is_written_into_not_replaced(model, files, tmp_path, capsys, command):
    # as /dev/stdout, /dev/null or a shell's >(jq .): renaming a file over it would replace
    # the device (as root, /dev/null itself) and leave the reader waiting
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    args = {
        "export": ["export", "--model", model, "--out", fifo],
        "evaluate --json": ["evaluate", "--model", model, "--test", files["test"], "--json", fifo],
        "demo": ["demo", "--model", model, "--no-table", "--out", fifo],
    }[command]
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: the write does not block
    try:
        code, _, err = run(args, capsys)
        assert code == 0, err
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO
        received = os.read(reader, 1 << 20)
    finally:
        os.close(reader)
    assert received.lower().startswith(b"<!doctype" if command == "demo" else b"{"), received[:80]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]  # no temporary file left behind


def test_an_output_named_by_a_descriptor_is_written_through_it(tmp_path):
    # --json /dev/stdout with stdout redirected to a file: a file renamed over /dev/stdout
    # (as root it replaced the link in /dev; else 'Permission denied')
    from sparse_rational.fileio import atomic_write_json

    target = tmp_path / "out.txt"
    with open(target, "wb", buffering=0) as fh:
        fh.write(b"before\n")
        atomic_write_json(f"/dev/fd/{fh.fileno()}", {"a": 1}, indent=None)
        fh.write(b"after\n")  # at the descriptor's offset: after the JSON, not over it
    assert target.read_text() == 'before\n{"a":1}\nafter\n'


@pytest.mark.parametrize("command", ["demo --out", "explain --html", "reproduce --train", "reproduce --test"])
def test_a_symlink_loop_as_a_path_is_one_line(model, files, tmp_path, capsys, command):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # Path.resolve() raises RuntimeError on it (Python < 3.13)
    vec, train, test = files["vec"], files["train"], files["test"]
    sweep = ["reproduce", "--embeddings", vec, "--dry-run", "--budget", "smoke", "--out", tmp_path / "sweep"]
    args = {
        "demo --out": ["demo", "--model", model, "--no-table", "--out", loop / "page.html"],
        "explain --html": ["explain", "--model", model, "--train", train, "--html", loop / "report.html"],
        "reproduce --train": [*sweep, "--train", loop, "--test", test],
        "reproduce --test": [*sweep, "--train", train, "--test", loop],
    }[command]
    code, _, err = run(args, capsys)
    assert code == 2
    one_line(err, str(loop))


@pytest.mark.parametrize(
    "command", ["export --out", "demo --out", "evaluate --json", "explain --html", "reproduce --out"]
)
def test_an_empty_output_path_is_refused_not_ignored(model, files, tmp_path, capsys, monkeypatch, command):
    # --json "$OUT" with OUT unset: no JSON at all, exit 0 (evaluate, explain); '.: Device or resource busy' (export)
    monkeypatch.chdir(tmp_path)
    args = {
        "export --out": ["export", "--model", model, "--out", ""],
        "demo --out": ["demo", "--model", model, "--no-table", "--out", ""],
        "evaluate --json": ["evaluate", "--model", model, "--test", files["test"], "--json", ""],
        "explain --html": ["explain", "--model", model, "--train", files["train"], "--html", ""],
        "reproduce --out": [  # was: the sweep written into the current folder
            *("reproduce", "--train", files["train"], "--test", files["test"], "--embeddings", files["vec"]),
            *("--budget", "smoke", "--assignments", "1", "--reruns", "1", "--epochs", "1", "--baselines", "1x1"),
            *("--no-targets", "--workers", "1", "--out", ""),
        ],
    }[command]
    code, _, err = run(args, capsys)
    assert code == 2
    one_line(err, f"{command.split()[1]}: an empty path")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["in a missing folder", "a folder"])
@pytest.mark.parametrize("command", ["evaluate --json", "export --out"])
def test_an_output_file_that_cannot_be_written_is_refused_before_the_work(
    model, files, tmp_path, capsys, monkeypatch, command, where
):
    # was: 'No such file or directory' / 'Is a directory', exit 1, after the whole evaluation
    import sparse_rational.pipeline as pipeline

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded: the command did not stop before its work")

    monkeypatch.setattr(pipeline.TextClassifier, "load", load)
    target = tmp_path / "missing" / "out.json" if where == "in a missing folder" else tmp_path
    args = {
        "evaluate --json": ["evaluate", "--model", model, "--test", files["test"], "--json", target],
        "export --out": ["export", "--model", model, "--out", target],
    }[command]
    code, _, err = run(args, capsys)
    assert code == 2
    one_line(err, f"{command.split()[1]} {target}", "does not exist" if where == "in a missing folder" else "folder")


@pytest.mark.parametrize(
    "command", ["predict --model", "predict FILE", "demo --out", "explain --html", "train --teacher"]
)
def test_a_path_holding_a_newline_is_named_on_one_line(model, files, tmp_path, capsys, command):
    odd = str(tmp_path / "a\nb")
    args = {
        "predict --model": ["predict", "--model", odd, files["test"]],
        "predict FILE": ["predict", "--model", model, odd],
        "demo --out": ["demo", "--model", model, "--no-table", "--out", odd + "/page.html"],
        "explain --html": ["explain", "--model", model, "--train", files["train"], "--html", odd + "/report.html"],
        "train --teacher": train_args(files, tmp_path / "m", "--teacher", odd),
    }[command]
    code, _, err = run(args, capsys)
    assert code == 2
    one_line(err, str(tmp_path / "a b"))  # was: the message broken over two or three lines


# -- 2. one run per output; resume refuses changed vectors ---------------------------------------


def test_a_second_run_on_the_same_out_is_refused(files, tmp_path, capsys):
    out = tmp_path / "m"
    holder = Checkpointer(checkpoint_dir(out), "other run", lock_for=f"--out {out}")
    try:
        code, _, err = run(train_args(files, out), capsys)
    finally:
        holder.remove()
    assert code == 2
    one_line(err, "another training run")
    assert not out.exists()
    code, _, err = run(train_args(files, out), capsys)  # the lock is gone with its run
    assert code == 0, err


class _KillAfterFirstCheckpoint(Exception):
    pass


def _interrupted_run(files, out, capsys, monkeypatch, vec):
    original = Checkpointer.save

    def save_then_interrupt(self, *a, **kw):
        original(self, *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", save_then_interrupt)
    args = train_args(files, out)
    args[args.index("--embeddings") + 1] = str(vec)
    code, _, err = run(args, capsys)
    monkeypatch.setattr(Checkpointer, "save", original)
    assert code == 130
    assert "--resume" in err and str(checkpoint_dir(out)) in err
    return args


def test_resume_refuses_a_changed_vector_file(files, tmp_path, capsys, monkeypatch):
    vec = tmp_path / "vec.txt"
    lines = files["vec"].read_text().splitlines(keepends=True)
    vec.write_text("".join(lines))
    args = _interrupted_run(files, tmp_path / "m", capsys, monkeypatch, vec)
    stat = vec.stat()
    vec.write_text("".join(lines[1:] + lines[:1]))  # same words, same size, another order
    os.utime(vec, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, _, err = run([*args, "--resume"], capsys)
    assert code == 2
    one_line(err, "different command")


def test_resume_accepts_the_same_vector_file(files, tmp_path, capsys, monkeypatch):
    vec = tmp_path / "vec.txt"
    vec.write_text(files["vec"].read_text())
    args = _interrupted_run(files, tmp_path / "m", capsys, monkeypatch, vec)
    code, _, err = run([*args, "--resume"], capsys)
    assert code == 0, err
    assert not checkpoint_dir(tmp_path / "m").exists()


def test_source_fingerprint_samples_large_files(tmp_path):
    big = tmp_path / "big.txt"
    data = bytearray(os.urandom(1 << 23))
    big.write_bytes(bytes(data))
    before = checkpoint_module.source_fingerprint(str(big))
    data[:10] = b"0123456789"
    big.write_bytes(bytes(data))
    assert checkpoint_module.source_fingerprint(str(big)) != before
    assert checkpoint_module.source_fingerprint("glove-6b-50d") == {"name": "glove-6b-50d"}


# -- 3. hostile options and streams -------------------------------------------------------------


@pytest.mark.parametrize(
    "option,value",
    [
        ("--patterns", "99999999999x1"),
        ("--patterns", "1000000000x1"),
        ("--patterns", "1x99999999999999999999"),
        ("--seed", "-1"),
        ("--seed", "99999999999999999999999"),
        ("--split-seed", "-3"),
        ("--self-loop-bias", "nan"),  # was: trained, then exit 3 'the loss became nan ... try a smaller lr'
        ("--self-loop-bias", "inf"),
    ],
)
def test_absurd_sizes_and_seeds_are_one_line_errors(option, value, files, tmp_path, capsys, monkeypatch):
    args = train_args(files, tmp_path / "m")
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    forbid_training(monkeypatch, data_too=True)  # refused from the options alone: nothing is read or built
    code, _, err = run(args, capsys)
    assert code == 2
    one_line(err, option)
    assert list(tmp_path.iterdir()) == []  # no model, no checkpoint


def test_a_lone_surrogate_is_refused_before_training():
    good = [Example("w0 w2", "pos"), Example("w1 w3", "neg")] * 4
    with pytest.raises(UserError, match="surrogate") as info:
        train_text_classifier(
            Splits(good + [Example("go \ud800", "pos")], [], []),
            "glove-6b-50d",
            "1x1",
            train_config=TrainConfig(epochs=1),
            verbose=False,
        )
    assert "\n" not in str(info.value)


def test_a_full_disk_while_saving_names_the_out_folder_and_keeps_the_checkpoint(files, tmp_path, capsys, monkeypatch):
    import sparse_rational.fileio as fileio

    real = fileio.os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and "model.safetensors" in os.readlink(
            f"/proc/self/fd/{fd}"
        ):
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    out = tmp_path / "m"
    code, _, err = run(train_args(files, out), capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert any(line.endswith(f"{out}: No space left on device") for line in lines), err
    assert ".tmp" not in err and "Traceback" not in err
    assert "--resume" in err  # the checkpoint is kept, and said so
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_dir(out).name]


def test_predict_with_closed_streams_is_one_line(model, tmp_path):
    for redirect in ("<&-", ">&-"):
        cmd = " ".join(cli("predict", "--model", str(model), "-")) + f" {redirect}"
        proc = subprocess.run(
            ["bash", "-c", cmd],
            input=None if redirect == "<&-" else "w0 w2\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (redirect, proc.stderr)
        one_line(proc.stderr, "closed")


@pytest.mark.parametrize("command", ["evaluate", "evaluate --json -", "explain", "demo"])
def test_a_closed_stdout_is_one_line_where_the_results_go_there(model, files, tmp_path, capsys, monkeypatch, command):
    # before: evaluate exited 0 with its results lost; explain, evaluate --json - and demo (after
    # writing the page) an AttributeError traceback
    args = {
        "evaluate": ["evaluate", "--model", model, "--test", files["test"]],
        "evaluate --json -": ["evaluate", "--model", model, "--test", files["test"], "--json", "-"],
        "explain": ["explain", "--model", model, "--doc", "w0 w2"],
        "demo": ["demo", "--model", model, "--no-table", "--out", tmp_path / "page.html"],
    }[command]
    monkeypatch.setattr(sys, "stdout", None)  # as `>&-` leaves it
    code, _, err = run(args, capsys)
    if command == "demo":  # its output is the page; 'wrote ...' is only information
        assert code == 0 and not err, err
        assert (tmp_path / "page.html").is_file()
    else:
        assert code == 2
        one_line(err, f"{command.split()[0]}: standard output is closed")


def test_predict_into_head_exits_quietly(model, tmp_path, monkeypatch):
    texts = tmp_path / "texts.txt"
    texts.write_text("w0 w2 w3\n" * 20000)
    cmd = " ".join(cli("predict", "--model", str(model), str(texts))) + " | head -1; exit ${PIPESTATUS[0]}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    first = json.loads(proc.stdout)  # the first text's prediction, whole: as PyTorch's path computes it
    monkeypatch.setenv(SPARSE_RATIONAL_IMPL, "scan")  # here, not the folded table the command used
    clf = TextClassifier.load(model)
    assert clf.folded() is None
    probs = clf.predict_proba(["w0 w2 w3"])[0]
    assert first["label"] == clf.classes[int(probs.argmax())]
    np.testing.assert_allclose([first["probabilities"][c] for c in clf.classes], probs, rtol=0, atol=1e-5)


def test_a_huge_single_line_is_cut_and_memory_stays_bounded(model, tmp_path, monkeypatch):
    line = tmp_path / "line.txt"
    line.write_text("w0 w2 " * 4_000_000 + "\n")  # 24 MB, 8M tokens
    # the peak of this process's own memory (VmHWM): getrusage's ru_maxrss would also count
    # the memory of the forked parent (the test run) that the child had before its exec
    code = (
        "import re, sys; from sparse_rational.cli import main; rc = main(sys.argv[1:]); "
        "status = open('/proc/self/status').read(); "
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules), file=sys.stderr); "
        "print(re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "predict", "--model", str(model), str(line)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    *lines, imported, peak_kb = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut" in lines[0] and "--max-tokens 0" in lines[0]
    assert int(peak_kb) < 900_000, f"peak RSS {int(peak_kb) // 1024} MB (imported: {imported})"
    assert imported == "[]"  # a model on static vectors predicts without PyTorch
    # the numbers of the cut text, as PyTorch's path through the library cuts and reads it
    got = json.loads(proc.stdout)
    monkeypatch.setenv(SPARSE_RATIONAL_IMPL, "scan")  # not the folded table the command used
    clf = TextClassifier.load(model)
    assert clf.folded() is None
    probs = clf.predict_proba([line.read_text()])[0]
    assert clf.truncated_texts == 1
    assert got["label"] == clf.classes[int(probs.argmax())]
    np.testing.assert_allclose([got["probabilities"][c] for c in clf.classes], probs, rtol=0, atol=1e-5)


def test_predict_cuts_long_texts_like_training(model):
    clf = TextClassifier.load(model)
    text = "w1 " * 50 + "w0"
    whole = clf.predict_proba([text], max_tokens=0)
    assert clf.truncated_texts == 0
    cut = clf.predict_proba([text], max_tokens=10)
    assert clf.truncated_texts == 1
    same = clf.predict_proba(["w1 " * 8], max_tokens=0)  # <s> + 8 words + </s>: what the cut text reads
    np.testing.assert_allclose(cut, same, atol=1e-6)
    assert not np.allclose(whole, cut)


# -- 4. evaluate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["", "  "])
def test_explain_names_an_empty_doc(model, capsys, doc):
    code, _, err = run(["explain", "--model", model, "--doc", doc], capsys)
    assert code == 2
    one_line(err, "--doc is empty")  # not 'give --dataset SPEC or --train FILE (or only --doc TEXT)'


def test_evaluate_refuses_a_dataset_and_a_test_file_together(model, files, capsys):
    code, _, err = run(["evaluate", "--model", model, "--dataset", "fdu:books", "--test", files["test"]], capsys)
    assert code == 2
    one_line(err, "--dataset", "--test")


def test_evaluate_json_to_stdout_is_valid_json(model, files, capsys):
    code, out, err = run(["evaluate", "--model", model, "--test", files["test"], "--json", "-"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 32 and 0 <= result["accuracy"] <= 1
    assert "accuracy" in err


def test_strict_refuses_empty_documents_that_are_skipped_by_default(files, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text(files["train"].read_text() + "pos\t\nneg\t   \n")
    args = train_args(files, tmp_path / "m")
    args[args.index("--train") + 1] = str(train)
    code, _, err = run([*args, "--strict"], capsys)
    assert code == 2
    one_line(err, f"{train.name}:97")
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert "skipped 2" in err


# -- 5. signals -------------------------------------------------------------------------------------


def _sigterm_after_first_checkpoint(command: list[str], out) -> tuple[int, str]:
    """Run ``command`` (an endless training into ``out``), send SIGTERM once its first
    checkpoint exists; its exit status and stderr."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = checkpoint_dir(out) / checkpoint_module.FILE
    end = time.monotonic() + 900  # a liveness bound, not a speed claim: a loaded 2-core machine is slow
    while not ck.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < end
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def test_sigterm_during_training_says_what_was_saved(files, tmp_path):
    out = tmp_path / "m"
    args = train_args(files, out, "--epochs", "100000", "--patience", "100000")
    code, err = _sigterm_after_first_checkpoint(cli(*args), out)
    assert code == 128 + signal.SIGTERM
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert any("--resume" in line and str(checkpoint_dir(out)) in line for line in lines), err
    assert lines[-1] == "sparse-rational: terminated"


def test_a_sigterm_whose_exception_was_lost_still_stops_training_at_the_next_checkpoint(files, tmp_path):
    """Python ignores an exception raised while a finaliser (``__del__``) runs, the SIGTERM
    handler's too: here the handler raises nothing at all, as if every such exception were
    lost, and the run still stops, after the checkpoint of the epoch, saying what was saved."""
    out = tmp_path / "m"
    args = train_args(files, out, "--epochs", "100000", "--patience", "100000")
    code = (
        "import sys; from sparse_rational import commandline, errors; "
        "commandline._on_sigterm = lambda signum, frame: errors.note_terminated(); "
        "from sparse_rational.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    status, err = _sigterm_after_first_checkpoint([sys.executable, "-c", code, *args], out)
    assert status == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert any("--resume" in line and str(checkpoint_dir(out)) in line for line in lines), err
    assert lines[-1] == "sparse-rational: terminated" and "Traceback" not in err


def test_the_terminated_mark_is_forgotten_when_the_command_ends(tmp_path, capsys):
    """In a process that goes on (tests, notebooks), a SIGTERM of one command does not stop
    the next one."""
    from sparse_rational import errors

    errors.note_terminated()
    with pytest.raises(errors.Terminated):
        errors.raise_if_terminated()
    assert main(["predict", "--model", str(tmp_path / "missing"), "-"]) == 2  # any command, ending
    capsys.readouterr()
    errors.raise_if_terminated()  # forgotten: nothing raised


# -- 6. model files are bounded before they are read -------------------------------------------------


def test_a_huge_vocab_file_is_refused_unread(model, tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(model, path)
    with open(path / "vocab.txt", "r+b") as fh:
        fh.truncate(10**10)  # sparse: 10 GB that take no disk
    read = Path.read_bytes

    def guarded(self):
        assert self.name != "vocab.txt", "vocab.txt was read"
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    with pytest.raises(UserError, match="too large") as info:
        TextClassifier.load(path)
    assert "vocab.txt" in str(info.value)


def test_a_vocab_file_with_extra_lines_is_refused(model, tmp_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(model, path)
    with open(path / "vocab.txt", "a") as fh:
        fh.write("extra\n" * 3)
    with pytest.raises(UserError, match="lines"):
        TextClassifier.load(path)


def test_a_failed_target_search_leaves_no_work_area_behind(files, tmp_path, capsys, monkeypatch):
    import sparse_rational.learn as learn
    from sparse_rational.errors import ParameterError

    real = learn.penalise
    calls = []

    def penalise_then_give_up(*args, **kwargs):  # one real try (a checkpoint is written), then the search fails
        calls.append(1)
        if len(calls) > 1:
            raise ParameterError("target_transitions", "3 not reached within +-2 after 1 tries")
        return real(*args, **kwargs)

    monkeypatch.setattr(learn, "penalise", penalise_then_give_up)
    out = tmp_path / "m"
    code, _, err = run(train_args(files, out, "--target-transitions", "3", "--reg-epochs", "2"), capsys)
    assert code == 2
    one_line(err.strip().splitlines()[-1], "--target-transitions")
    assert not checkpoint_dir(out).exists() and not out.exists()

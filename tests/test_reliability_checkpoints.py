"""Reliability: checkpoints and --resume. An interrupted training run (SIGKILLed, or stopped
in any phase) resumes to the metrics and weights of an uninterrupted one; a checkpoint of
another command, or a damaged one, is refused with one line.

Split by topic from the former tests/test_reliability.py; shared helpers:
test_reliability_helpers.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from test_reliability_helpers import (
    Interrupt,
    StopAfter,
    _train_cli,
    one_line,
    one_torch_thread,
    onehot_vectors,
    run_api,
    same_result,
)

from sparse_rational.checkpoint import FILE, Checkpointer, checkpoint_dir, read_checkpoint
from sparse_rational.cli import main
from sparse_rational.errors import UserError

_one_thread = pytest.fixture(autouse=True, scope="module", name="_one_thread")(one_torch_thread)
onehot = pytest.fixture(scope="module", name="onehot")(onehot_vectors)


# ------------------------------------------------------------------------------------------
# 1. checkpoints and --resume


def _cli_train(tiny_files, out, *extra):
    return [
        sys.executable,
        "-m",
        "sparse_rational.cli",
        "train",
        *tiny_args(tiny_files),
        "--patterns",
        "3x2,2x1",
        "--reg-strength",
        "0.01",
        "--reg-epochs",
        "2",
        "--epochs",
        "3",
        "--patience",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _wait_for(predicate, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError("timed out")


def _phase(path: Path):
    try:
        ck = read_checkpoint(path)
    except (UserError, FileNotFoundError):
        return None
    return ck.phase, ck.epoch


def test_sigkilled_training_resumes_to_the_same_metrics(tiny_files, tmp_path, monkeypatch):
    """A real training process is SIGKILLed mid-epoch in the penalised phase and again in
    finetuning; each time the checkpoint is whole, and the resumed run ends with the
    metrics and weights of an uninterrupted run (run in this process meanwhile)."""
    monkeypatch.setenv("SPARSE_RATIONAL_IMPL", "reference")  # slow epochs: kills land mid-epoch
    env = dict(os.environ)
    out = tmp_path / "killed"
    ck_file = checkpoint_dir(out) / FILE
    full_code = []
    full = threading.Thread(target=lambda: full_code.append(main(_cli_train(tiny_files, tmp_path / "full")[3:])))
    seen = []
    # kill 1: in penalised epoch 2 (after the first checkpoint exists)
    # kill 2: inside finetuning (after its first checkpoint exists)
    for resume, until in ((False, lambda p: p is not None), (True, lambda p: p is not None and p[0] == "finetune")):
        proc = subprocess.Popen(
            _cli_train(tiny_files, out, *(["--resume"] if resume else [])),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if not full.is_alive() and not full_code:
            full.start()  # the uninterrupted run, while the first process starts up
        _wait_for(lambda until=until: until(_phase(ck_file)), proc)
        time.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(read_checkpoint(ck_file))  # whole, never broken
        if resume:
            assert "resuming from" in proc.stderr.read()
    assert seen[0].phase == "penalised" and seen[1].phase == "finetune"
    assert not out.exists()  # the model folder is written only at the end
    full.join(timeout=300)
    assert full_code == [0]
    assert main(_cli_train(tiny_files, out, "--resume")[3:]) == 0  # the last stretch, in this process
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path / "full", out))
    for key in (
        "dev_accuracy",
        "test_accuracy",
        "structure",
        "transitions",
        "epochs",
        "best_epoch",
        "penalised_epochs",
        "finetune_epochs",
    ):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    flat = [[x for g in m["group_norms"] for x in g] for m in (a, b)]
    np.testing.assert_allclose(flat[0], flat[1], rtol=0, atol=1e-6)
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    # the work area is gone, and the model folder never held a checkpoint
    assert not checkpoint_dir(out).exists() and not checkpoint_dir(tmp_path / "full").exists()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "metrics.json", "model.safetensors", "vocab.txt"]


def test_sigkill_while_writing_leaves_the_old_or_the_new_checkpoint(tmp_path):
    """A child process rewrites a checkpoint in a loop and is SIGKILLed at random moments."""
    directory = tmp_path / "ck"
    payload = [torch.full((400_000,), float(i)) for i in range(2)]  # 1.6 MB: writes take a while
    rng_state = torch.get_rng_state()
    rnd = random.Random(0)
    epochs = set()
    for _trial in range(6):
        pid = os.fork()
        if pid == 0:  # child: no torch compute, only writes
            code = 0
            try:
                ck = Checkpointer(directory, "run", verbose=False)
                for epoch in range(1, 10**9):
                    ck.save("train", epoch, {"rng.torch": rng_state, "model.x": payload[epoch % 2]}, {})
            except BaseException:
                code = 1
            os._exit(code)
        time.sleep(rnd.uniform(0.02, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if (directory / FILE).exists():
            ck = read_checkpoint(directory / FILE)
            assert torch.equal(ck.tensors["model.x"], payload[ck.epoch % 2])
            epochs.add(ck.epoch)
    assert epochs, "no checkpoint was ever completed"
    Checkpointer(directory, "run", verbose=False)  # a new run clears the killed writers' temporaries
    assert [p.name for p in directory.iterdir()] == [FILE]


@pytest.mark.parametrize("kind", ["train", "penalised", "search"])
def test_resume_in_every_phase_gives_the_uninterrupted_result(kind, onehot, tmp_path):
    args = {
        "train": {},
        "penalised": {"reg": 0.03, "epsilon": 0.5},
        "search": {"target": 3, "search_start": 0.1, "search_max_tries": 6, "epsilon": 0.5},
    }[kind]
    counter = StopAfter(tmp_path / "count", "h", stop_after=-1, verbose=False)
    reference = run_api(onehot, counter, **args)
    total = counter.saves
    if kind == "search":
        assert len(reference.metrics["search"]) >= 2, "the search should take several tries"
    if kind != "train":
        assert 0 < reference.metrics["transitions"] < 6, "pruning should shrink the model"
    # interrupt after the first save, at the end of the (first) penalised phase, inside the
    # next phase, just before the end and after the last epoch; then resume
    for stop in sorted({1, 3, 4, total - 1, total}):
        ck = StopAfter(tmp_path / f"ck{stop}", "h", stop_after=stop, verbose=False)
        with pytest.raises(Interrupt):
            run_api(onehot, ck, **args)
        resumed = run_api(onehot, Checkpointer(tmp_path / f"ck{stop}", "h", resume=True, verbose=False), **args)
        same_result(reference, resumed)


def test_resume_refuses_another_commands_checkpoint_and_replaces_without_resume(
    tiny_files, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "m"
    monkeypatch.setattr(Checkpointer, "remove", Checkpointer.release)  # keep the work area to play with
    assert main(_train_cli(tiny_files, out, "--seed", "1")) == 0
    capsys.readouterr()
    assert main(_train_cli(tiny_files, out, "--seed", "2", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different command" in err and FILE in err
    assert main(_train_cli(tiny_files, out, "--seed", "2")) == 0
    err = capsys.readouterr().err
    assert "will be replaced" in err
    assert main(_train_cli(tiny_files, out, "--seed", "2", "--resume")) == 0  # now it is this command's
    assert "resuming from" in capsys.readouterr().err


def _checkpoint_file(tmp_path, onehot) -> Path:
    ck = StopAfter(tmp_path / "src", "h", stop_after=2, verbose=False)
    with pytest.raises(Interrupt):
        run_api(onehot, ck, reg=0.02)
    return ck.path


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "pickle", "foreign", "empty"])
def test_damaged_checkpoint_is_refused_with_one_line(damage, onehot, tmp_path):
    path = _checkpoint_file(tmp_path, onehot)
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":  # a byte of tensor data: only the checksum can tell
        data = data[:-100] + bytes([data[-100] ^ 0x40]) + data[-99:]
    elif damage == "garbage":
        data = os.urandom(5000)
    elif damage == "pickle":  # torch.save uses pickle: never unpickled on any load path
        buf = io.BytesIO()
        torch.save({"model": torch.zeros(3)}, buf)
        data = buf.getvalue()
    elif damage == "foreign":  # a valid safetensors file that is not a checkpoint
        save_file({"w": torch.zeros(2)}, str(path))
        data = path.read_bytes()
    else:
        data = b""
    path.write_bytes(data)
    with pytest.raises(UserError) as info:
        Checkpointer(path.parent, "h", resume=True, verbose=False)
    one_line(info.value, str(path))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10**6), flip=st.integers(0, 10**6), value=st.integers(1, 255))
def test_fuzz_checkpoint_reader(tmp_path_factory, onehot, cut, flip, value):
    src = _fuzz_checkpoint(tmp_path_factory, onehot)
    data = bytearray(src.read_bytes())
    data[flip % len(data)] ^= value
    data = bytes(data[: len(data) - cut % 50]) if cut % 3 == 0 else bytes(data)
    path = tmp_path_factory.mktemp("fz") / FILE
    path.write_bytes(data)
    try:
        read_checkpoint(path)
    except UserError as exc:
        one_line(exc, str(path))


_FUZZ_CACHE: dict = {}


def _fuzz_checkpoint(tmp_path_factory, onehot) -> Path:
    if "ck" not in _FUZZ_CACHE:
        _FUZZ_CACHE["ck"] = _checkpoint_file(tmp_path_factory.mktemp("fzsrc"), onehot)
    return _FUZZ_CACHE["ck"]

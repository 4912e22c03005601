"""Reliability: interrupted training resumes exactly, untrusted files are refused with one
line, bad input never crashes, degenerate training ends cleanly, runs are deterministic.

The kill-and-resume test SIGKILLs real training processes; everything else runs in process
on tiny synthetic data (one-hot vectors) so that the file stays fast.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from sparse_rational.checkpoint import FILE, Checkpointer, checkpoint_dir, read_checkpoint
from sparse_rational.cli import main
from sparse_rational.data import Example, Splits, load_dataset, load_file as load_data_file, read_reviews
from sparse_rational.embeddings.static import load_word_vectors
from sparse_rational.errors import DataError, UserError
from sparse_rational.learn import StructureOptions
from sparse_rational.pipeline import TextClassifier, train_text_classifier
from sparse_rational.train import TrainConfig

WORDS = [f"w{i}" for i in range(12)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: more threads only add contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
TIMING = {"train_seconds", "seconds_per_epoch"}


@pytest.fixture(scope="module")
def onehot(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(WORDS))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(WORDS, eye)))
    return str(path)


def task(n: int, seed: int, pos_share: float = 0.5) -> list[Example]:
    """Positive iff the document holds w0 (negatives hold w1), in random filler."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = int(rng.random() < pos_share)
        words = list(rng.choice(WORDS[2:], size=rng.integers(4, 9)))
        words.insert(rng.integers(0, len(words) + 1), "w0" if label else "w1")
        out.append(Example(" ".join(words), "pos" if label else "neg"))
    return out


SPLITS = Splits(task(96, 1), task(32, 2), task(32, 3))


def run_api(vectors, checkpoint=None, splits=SPLITS, patterns="3x2", reg=0.0, target=None, epochs=6,
            reg_epochs=3, **opts):
    cfg = TrainConfig(epochs=epochs, patience=epochs, batch_size=16, lr=0.05, seed=3)
    sopts = StructureOptions(reg_epochs=reg_epochs, **opts)
    return train_text_classifier(splits, vectors, patterns, reg_strength=reg, target_transitions=target,
                                 train_config=cfg, structure_options=sopts, dropout=0.2, input_dropout=0.2,
                                 verbose=False, checkpoint=checkpoint)


def same_result(a: TextClassifier, b: TextClassifier, atol: float = 1e-6) -> None:
    ma = {k: v for k, v in a.metrics.items() if k not in TIMING}
    mb = {k: v for k, v in b.metrics.items() if k not in TIMING}
    assert ma.keys() == mb.keys()
    for k in ma:
        if isinstance(ma[k], float):
            assert ma[k] == pytest.approx(mb[k], abs=atol), k
        else:
            assert ma[k] == mb[k], k
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=atol)


def one_line(exc: BaseException, *needles: str) -> str:
    msg = str(exc)
    assert msg.splitlines() == [msg] and msg.strip() == msg, f"not one line: {msg!r}"
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------
# 1. checkpoints and --resume


def _cli_train(tiny_files, out, *extra):
    return [sys.executable, "-m", "sparse_rational.cli", "train", "--train", str(tiny_files["train"]),
            "--dev", str(tiny_files["dev"]), "--test", str(tiny_files["test"]), "--embeddings", "glove-6b-50d",
            "--patterns", "3x2,2x1", "--reg-strength", "0.01", "--reg-epochs", "2", "--epochs", "3",
            "--patience", "4", "--batch-size", "8", "--threads", "1", "--quiet", "--out", str(out), *extra]


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
        proc = subprocess.Popen(_cli_train(tiny_files, out, *(["--resume"] if resume else [])), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not full.is_alive() and not full_code:
            full.start()  # the uninterrupted run, while the first process starts up
        _wait_for(lambda: until(_phase(ck_file)), proc)
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
    for key in ("dev_accuracy", "test_accuracy", "structure", "transitions", "epochs", "best_epoch",
                "penalised_epochs", "finetune_epochs"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    flat = [[x for g in m["group_norms"] for x in g] for m in (a, b)]
    np.testing.assert_allclose(flat[0], flat[1], rtol=0, atol=1e-6)
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    # the work area is gone, and the model folder never held a checkpoint
    assert not checkpoint_dir(out).exists() and not checkpoint_dir(tmp_path / "full").exists()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "vocab.txt"]


def test_sigkill_while_writing_leaves_the_old_or_the_new_checkpoint(tmp_path):
    """A child process rewrites a checkpoint in a loop and is SIGKILLed at random moments."""
    directory = tmp_path / "ck"
    payload = [torch.full((400_000,), float(i)) for i in range(2)]  # 1.6 MB: writes take a while
    rng_state = torch.get_rng_state()
    rnd = random.Random(0)
    epochs = set()
    for trial in range(6):
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


class Interrupt(Exception):
    pass


class StopAfter(Checkpointer):
    """Raises right after the n-th checkpoint of this process, like a kill would."""

    def __init__(self, *args, stop_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.left = stop_after
        self.saves = 0

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.saves += 1
        self.left -= 1
        if self.left == 0:
            raise Interrupt


@pytest.mark.parametrize("kind", ["train", "penalised", "search"])
def test_resume_in_every_phase_gives_the_uninterrupted_result(kind, onehot, tmp_path):
    args = {"train": {}, "penalised": {"reg": 0.03, "epsilon": 0.5},
            "search": {"target": 3, "search_start": 0.1, "search_max_tries": 6, "epsilon": 0.5}}[kind]
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


def _train_cli(tiny_files, out, *extra):
    return ["train", "--train", str(tiny_files["train"]), "--dev", str(tiny_files["dev"]), "--embeddings",
            "glove-6b-50d", "--patterns", "2x2", "--out", str(out), "--epochs", "2", "--quiet", "--threads", "1",
            *extra]


def test_resume_refuses_another_commands_checkpoint_and_replaces_without_resume(tiny_files, tmp_path, capsys,
                                                                               monkeypatch):
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
    "truncated weights": (lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:-7]), "model.safetensors"),
    "garbage weights": (_write("model.safetensors", os.urandom(3000)), "model.safetensors"),
    "pickled weights": (_pickle_weights, "model.safetensors"),
    "empty weights": (_write("model.safetensors", b""), "model.safetensors"),
    "int weights": (_edit_tensors(lambda t: t.update({"wfsa.b": t["wfsa.b"].long()})), "model.safetensors"),
    "nan weights": (_edit_tensors(lambda t: t["wfsa.w"].__setitem__((0, 0), float("nan"))), "model.safetensors"),
    "missing tensor": (_edit_tensors(lambda t: t.pop("classifier.bias")), "model.safetensors"),
    "extra tensor": (_edit_tensors(lambda t: t.update({"evil": torch.zeros(1)})), "model.safetensors"),
    "wrong shape": (_edit_tensors(lambda t: t.update({"wfsa.w": t["wfsa.w"][:, :2].contiguous()})),
                    "model.safetensors"),
    "structure vs shapes": (_edit_json("config.json", lambda c: c["model"].update(structure=[2, 2, 2])),
                            "model.safetensors"),
    "huge structure": (_edit_json("config.json", lambda c: c["model"].update(structure=[10**9])), "config.json"),
    "huge embedding dim": (_edit_json("config.json", lambda c: c["model"].update(embedding_dim=10**9)),
                           "config.json"),
    "embedding dim vs shapes": (_edit_json("config.json", lambda c: c["model"].update(embedding_dim=7)),
                                "model.safetensors"),
    "string dim": (_edit_json("config.json", lambda c: c["model"].update(embedding_dim="12")), "config.json"),
    "bad dropout": (_edit_json("config.json", lambda c: c["model"].update(dropout=3)), "config.json"),
    "unknown model field": (_edit_json("config.json", lambda c: c["model"].update(evil=1)), "config.json"),
    "vocab size": (_edit_json("config.json", lambda c: c["model"].update(vocab_size=5)), "vocab.txt"),
    "classes": (_edit_json("config.json", lambda c: c.update(classes=["a", "a"])), "config.json"),
    "classes count": (_edit_json("config.json", lambda c: c.update(classes=["a", "b", "c"])), "config.json"),
    "classes string": (_edit_json("config.json", lambda c: c.update(classes="ab")), "config.json"),
    "token settings": (_edit_json("config.json", lambda c: c.update(tokens={"lowercase": 1})), "config.json"),
    "embeddings not an object": (_edit_json("config.json", lambda c: c.update(embeddings=[1])), "config.json"),
    "foreign json": (_write("config.json", b'{"architectures": ["BertModel"], "hidden_size": 768}'),
                     "config.json"),
    "json list": (_write("config.json", b"[1, 2]"), "config.json"),
    "deep json": (_write("config.json", b"[" * 100_000), "config.json"),
    "not utf-8 config": (_write("config.json", b"\xff\xfe{}"), "config.json"),
    "missing config": (lambda p: (p / "config.json").unlink(), "config.json"),
    "vocab not utf-8": (lambda p: (p / "vocab.txt").write_bytes((p / "vocab.txt").read_bytes() + b"\xff\n"),
                        "vocab.txt"),
    "vocab duplicate": (lambda p: (p / "vocab.txt").write_text(
        "\n".join(["<unk>"] * len((p / "vocab.txt").read_text().splitlines())) + "\n"), "vocab.txt"),
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
@given(name=st.sampled_from(["config.json", "model.safetensors", "vocab.txt"]),
       how=st.sampled_from(["cut", "flip", "insert"]), pos=st.integers(0, 10**6), data=st.binary(min_size=1, max_size=8))
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


# ------------------------------------------------------------------------------------------
# 3. fuzzing every loader

_VALUE = st.one_of(st.text(max_size=12), st.integers(-5, 5), st.none(), st.booleans(),
                   st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=2))
_FIELDS = st.dictionaries(st.sampled_from(["text", "label", "extra", "Text"]), _VALUE, max_size=4)
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"]


def _render(fmt: str, records: list[dict]) -> str:
    lines = []
    if fmt in ("tsv", "fdu"):
        for r in records:
            parts = [str(r[k]) for k in ("label", "text") if k in r]
            lines.append("\t".join(parts) + ("\t" + str(r["extra"]) if "extra" in r else ""))
    elif fmt == "jsonl":
        for r in records:
            lines.append(json.dumps(r) if "extra" not in r or r["extra"] is None else json.dumps(r.get("text")))
    elif fmt == "csv":
        keys = sorted({k for r in records for k in r}) or ["text"]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(keys)
        for r in records:
            w.writerow([r.get(k, "") for k in keys])
        return buf.getvalue()
    elif fmt == "review":
        for r in records:
            body = f"<review_text>\n{r['text']}\n</review_text>" if "text" in r else ""
            lines.append(f"<review>\n<title>{r.get('label', '')}</title>\n{body}\n" +
                         ("</review>" if "extra" not in r else ""))
    elif fmt == "glove":
        for r in records:
            nums = [str(r.get(k, "nan")) for k in ("text", "label", "extra")]
            lines.append(" ".join([f"w{len(lines)}", *nums[: 1 + len(r) % 3]]))
    return "\n".join(lines) + "\n"


@st.composite
def fuzz_files(draw, fmt):
    text = _render(fmt, draw(st.lists(_FIELDS, max_size=6)))
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 2))):  # empty lines, stray characters, Windows endings
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\r", "\t", "\x00", "\u2028"])))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    data = text.encode(draw(st.sampled_from(_ENCODINGS)), errors="replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


def _load(fmt: str, folder: Path, data: bytes):
    """Write ``data`` as a file of format ``fmt`` and read it with the matching loader."""
    if fmt == "fdu":
        (folder / "books.task.test").write_text("1\tgood stuff\n0\tbad stuff\n")
        path = folder / "books.task.train"
        path.write_bytes(data)
        return path, lambda: load_dataset("fdu:books", data_dir=folder)
    if fmt == "review":
        path = folder / "x.review"
        path.write_bytes(data)
        return path, lambda: read_reviews(path, "positive")
    if fmt in ("glove", "glove.gz"):
        path = folder / ("v.txt" if fmt == "glove" else "v.txt.gz")
        path.write_bytes(data if fmt == "glove" else gzip.compress(data))
        return path, lambda: load_word_vectors(str(path))
    path = folder / f"x.{fmt}"
    path.write_bytes(data)
    return path, lambda: load_data_file(path)


def _check_loaded(fmt: str, result) -> None:
    if fmt.startswith("glove"):
        assert result.vectors.shape == (len(result.words), result.dim) and result.dim >= 1
        assert np.isfinite(result.vectors).all()
        return
    examples = [e for part in (result.train, result.dev, result.test) for e in part] \
        if isinstance(result, Splits) else result
    assert examples or isinstance(result, Splits)
    for e in examples:
        assert isinstance(e, Example) and e.text and e.text == e.text.strip() and e.label == e.label.strip()


def _load_or_one_line_error(fmt: str, folder: Path, data: bytes) -> None:
    path, call = _load(fmt, folder, data)
    start = time.monotonic()
    try:
        result = call()
    except (DataError, UserError) as exc:
        one_line(exc, str(path))
    else:
        _check_loaded(fmt, result)
    assert time.monotonic() - start < 10, "no hang"


FORMATS = ["tsv", "jsonl", "csv", "review", "fdu", "glove", "glove.gz"]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_loaders_with_fields_encodings_and_stray_bytes(fmt, tmp_path_factory, data):
    content = data.draw(st.one_of(fuzz_files("glove" if fmt.startswith("glove") else fmt),
                                  st.binary(max_size=400)))
    _load_or_one_line_error(fmt, tmp_path_factory.mktemp(fmt.replace(".", "")), content)


_CLEAN = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff\x85"),
                 min_size=1, max_size=15).filter(lambda s: s.strip())


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "csv"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_CLEAN, _CLEAN), min_size=1, max_size=6), crlf=st.booleans())
def test_valid_files_parse_exactly(fmt, tmp_path_factory, rows, crlf):
    """Any labels and texts (but tabs in TSV labels) come back exactly, stripped."""
    if fmt == "tsv":
        rows = [(lab.replace("\t", " "), txt) for lab, txt in rows]
        text = "".join(f"{lab}\t{txt}\n" for lab, txt in rows)
    elif fmt == "jsonl":
        text = "".join(json.dumps({"label": lab, "text": txt, "id": i}) + "\n" for i, (lab, txt) in enumerate(rows))
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "label", "text"])
        w.writerows([i, lab, txt] for i, (lab, txt) in enumerate(rows))
        text = buf.getvalue()
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path_factory.mktemp("clean") / f"x.{fmt}"
    path.write_bytes(text.encode("utf-8"))
    got = load_data_file(path)
    assert [(e.label, e.text) for e in got] == [(lab.strip(), txt.strip()) for lab, txt in rows]


TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_10mb_line_is_read_or_refused_quickly(fmt, tmp_path):
    words = ("good " * (TEN_MB // 5)).strip()
    content = {
        "tsv": f"pos\t{words}\nneg\tbad\n", "fdu": f"1\t{words}\n0\tbad\n",
        "jsonl": json.dumps({"text": words, "label": "pos"}) + "\n",
        "csv": f"text,label\n{words},pos\n", "review": f"<review><review_text>{words}</review_text></review>",
        "glove": "w " + " ".join(["0.5"] * (TEN_MB // 4)) + "\n", "glove.gz": "w" + " 1" * (TEN_MB // 2) + "\n",
    }[fmt].encode()
    _load_or_one_line_error(fmt, tmp_path, content)
    # and 10 MB of markup that made the review regex quadratic, or no newline at all
    _load_or_one_line_error(fmt, tmp_path, b"<review>" * (TEN_MB // 8))
    _load_or_one_line_error(fmt, tmp_path, b"\x00" + b"a" * TEN_MB)


def test_glove_rejects_non_finite_vectors_and_absurd_headers(tmp_path):
    for text, line in (("a 0.1 0.2\nb nan 0.3\n", ":2"), ("a 1e39 0\n", ":1"), ("3 0\na\n", ":1"),
                       ("a 0.1\nb 0.1 0.2 x\n", ":2"), ("a\tb\n", ":1")):
        path = tmp_path / "v.txt"
        path.write_text(text)
        try:
            vec = load_word_vectors(str(path))
        except DataError as exc:
            one_line(exc, f"{path}{line}")
        else:  # "a 0.1 / b 0.1 0.2 x": b is the word "b 0.1" ... only if it parses
            assert np.isfinite(vec.vectors).all()


def test_export_json_has_no_loader():
    """The JSON export is write-only (read by numpy code of the user's, see README); there is
    no loader to fuzz."""
    import sparse_rational.export as export

    assert not [n for n in dir(export) if n.startswith(("load", "read", "import"))]


# ------------------------------------------------------------------------------------------
# 4. degenerate training


def test_every_state_pruned_predicts_the_class_prior(onehot, tmp_path, capsys):
    splits = Splits(task(100, 5, pos_share=0.7), task(20, 6), task(20, 7))
    clf = train_text_classifier(splits, onehot, "2x2", reg_strength=1.0,
                                train_config=TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0),
                                structure_options=StructureOptions(reg_epochs=3, epsilon=0.5), verbose=True)
    assert "every state was pruned" in capsys.readouterr().err
    assert clf.metrics["structure"] == [] and clf.metrics["transitions"] == 0
    prior = np.array([np.mean([e.label == c for e in splits.train]) for c in clf.classes])
    np.testing.assert_allclose(clf.predict_proba(["w0 w2", "w9", ""]), np.tile(prior, (3, 1)), atol=1e-6)
    loaded = TextClassifier.load(clf.save(tmp_path / "empty"))
    np.testing.assert_allclose(loaded.predict_proba(["w1"]), prior[None], atol=1e-6)


class NanAfter(torch.nn.CrossEntropyLoss):
    calls = 0
    limit = 10**9

    def forward(self, logits, target):
        NanAfter.calls += 1
        loss = super().forward(logits, target)
        return loss * float("nan") if NanAfter.calls > NanAfter.limit else loss


def test_nan_loss_stops_with_one_line_keeps_the_last_good_checkpoint(tiny_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", NanAfter)
    NanAfter.calls, NanAfter.limit = 0, 2 * 3 + 1  # 3 batches an epoch: NaN in epoch 3
    out = tmp_path / "m"
    args = _train_cli(tiny_files, out, "--batch-size", "64", "--epochs", "5")
    assert main(args) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "epoch 3" in err and "nan" in err and "train epoch 2" in err and str(checkpoint_dir(out)) in err
    ck = read_checkpoint(checkpoint_dir(out) / FILE)
    assert (ck.phase, ck.epoch) == ("train", 2) and not out.exists()
    # a run that diverges at once, naturally (a huge learning rate), saves nothing
    NanAfter.limit = 10**9
    assert main(_train_cli(tiny_files, tmp_path / "n", "--lr", "1e30", "--clip", "0")) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint was written" in err


def test_single_class_and_empty_training_data_are_one_line_errors(onehot):
    one = [Example("w0 w2", "pos"), Example("w0 w3", "pos")]
    with pytest.raises(UserError) as info:
        run_api(onehot, splits=Splits(one, [], []))
    one_line(info.value, "only one class")
    with pytest.raises(UserError) as info:
        run_api(onehot, splits=Splits([], one, []))
    one_line(info.value, "empty")


def test_empty_dev_set_trains_on_the_training_loss(onehot):
    clf = run_api(onehot, splits=Splits(SPLITS.train, [], SPLITS.test), reg=0.01)
    assert clf.metrics["dev_accuracy"] is None and clf.metrics["test_accuracy"] > 0.5


def test_documents_with_no_known_word(onehot):
    dev = [Example("zzz qqq", "pos"), Example("!!! ???", "neg")]
    clf = run_api(onehot, splits=Splits(SPLITS.train, dev, dev), epochs=2)
    probs = clf.predict_proba(["xyzzy plugh", "", "\u2603 \x00", "w0"])
    assert probs.shape == (4, 2) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)


_RSS_SCRIPT = textwrap.dedent("""
    import resource, torch
    torch.set_num_threads(1)
    from sparse_rational.model import ModelConfig, RationalClassifier
    from sparse_rational.train import EncodedData, TrainConfig, fit, predict_proba

    def data(T):
        g = torch.Generator().manual_seed(0)
        docs = [torch.randint(0, 100, (T,), generator=g)] + [torch.randint(0, 100, (50,), generator=g) for _ in range(7)]
        return EncodedData(docs, torch.tensor([0, 1] * 4))

    def peak_growth(fn):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024

    model = RationalClassifier(ModelConfig((4,) * 6, 50, 2, vocab_size=100), torch.randn(100, 50) / 7, impl="scan")
    dev = EncodedData(data(50).docs[1:], data(50).labels[1:])
    fit(model, data(50), dev, TrainConfig(epochs=1), verbose=False)  # warm up (lazy imports)
    # peak RSS only grows: first a 5,000-token document, then a 100,000-token one cut to 5,000
    short = peak_growth(lambda: fit(model, data(5_000), dev, TrainConfig(epochs=1, max_tokens=0), verbose=False))
    long = peak_growth(lambda: fit(model, data(100_000), dev, TrainConfig(epochs=1, max_tokens=5_000), verbose=False))
    whole = peak_growth(lambda: predict_proba(model, data(100_000)))  # prediction reads it whole, no graph
    print(short, long, whole)
""")


def test_a_100k_token_document_trains_in_bounded_memory():
    """Training cuts documents at --max-tokens (20,000 by default; 5,000 here): a batch
    holding a 100,000-token document costs no more than one holding a 5,000-token document,
    and prediction (no autograd graph) reads the whole document in little memory.
    Measured once with the reference recurrence, one forward+backward over all 100,000
    tokens grew the peak RSS by ~1 GB (about 10 kB of graph per step; linear in length)."""
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    short, long, whole = (int(x) for x in proc.stdout.split())
    assert long <= 0.2 * short + 30, (short, long)
    assert short < 300 and whole < 300, (short, whole)


def test_batches_are_capped_in_padded_tokens():
    from sparse_rational.train import bucket_batches

    lengths = np.array([100_000] + [60] * 63)
    capped = bucket_batches(lengths, 64, np.random.default_rng(0), max_tokens=2**19)
    assert max(len(b) * lengths[b].max() for b in capped) <= 2**19
    assert sorted(np.concatenate(capped).tolist()) == list(range(64))
    # batches within the budget are exactly those of before
    short = np.arange(10, 74)
    assert all(np.array_equal(a, b) for a, b in zip(bucket_batches(short, 16, np.random.default_rng(1), 2**19),
                                                    bucket_batches(short, 16, np.random.default_rng(1))))


# ------------------------------------------------------------------------------------------
# 5. determinism


def test_same_seed_same_metrics_run_to_run(tiny_files, tmp_path, capsys):
    for name in ("a", "b"):
        assert main(_train_cli(tiny_files, tmp_path / name, "--reg-strength", "0.005", "--reg-epochs", "2",
                               "--seed", "7")) == 0
    a, b = (TextClassifier.load(tmp_path / n) for n in "ab")
    same_result(a, b, atol=0)

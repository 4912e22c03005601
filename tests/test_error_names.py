"""A library error names the parameter as the caller spells it: ``--hf-segment-length`` on
the command line, ``hf_segment_length`` from Python (:class:`~sparse_rational.errors.ParameterError`)."""

from __future__ import annotations

import pytest
import torch

from sparse_rational.checkpoint import FILE, Checkpointer, checkpoint_dir
from sparse_rational.cli import main
from sparse_rational.embeddings import TransformerOptions
from sparse_rational.embeddings.encoder import ContextualEncoder
from sparse_rational.errors import ParameterError
from sparse_rational.experiments import cli as rcli
from sparse_rational.experiments.protocol import configurations


@pytest.fixture
def files(tmp_path):
    """A training and a dev file, two labels (nothing is trained: every case fails before)."""
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("".join(f"{'pos' if i % 2 else 'neg'}\ttext number {i}\n" for i in range(20)))
    dev.write_text("pos\tgood\nneg\tbad\n")
    return ["--train", str(train), "--dev", str(dev)]


def cli_error(capsys, argv, run=main) -> str:
    """The one stderr line of a command that fails with exit status 2, less its prefix."""
    capsys.readouterr()
    assert run(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("sparse-rational: error: "), line
    return line.removeprefix("sparse-rational: error: ")


def api_error(call) -> str:
    with pytest.raises(ParameterError) as info:
        call()
    return str(info.value)


def test_bad_hf_option(files, tmp_path, capsys):
    argv = ["train", *files, "--embeddings", "hf:minilm", "--hf-segment-length", "5", "--out", str(tmp_path / "m")]
    text = "expected an integer from 8 to 4096, got 5"
    assert cli_error(capsys, argv) == f"--hf-segment-length: {text}"
    assert api_error(lambda: TransformerOptions(segment_length=5)) == f"hf_segment_length: {text}"
    assert api_error(lambda: TransformerOptions(layers="first")).startswith("hf_layers: 'first' is not one of")


def test_encoder_folder_not_found(files, tmp_path, capsys):
    source = f"hf:{tmp_path / 'no{such}folder'}"  # braces in a value are kept as they are
    text = f"{source}: folder not found: {tmp_path / 'no{such}folder'}"
    argv = ["train", *files, "--embeddings", source, "--vectors", "frozen", "--out", str(tmp_path / "m")]
    assert cli_error(capsys, argv) == f"--embeddings {text}"
    assert api_error(lambda: ContextualEncoder(source)) == f"embeddings {text}"
    assert not (tmp_path / "m").exists()


def test_resume_of_another_commands_checkpoint(files, tmp_path, capsys):
    out = tmp_path / "m"
    other = Checkpointer(checkpoint_dir(out), "another command", verbose=False)
    other.save("train", 1, {"rng.torch": torch.get_rng_state()}, {})
    path = checkpoint_dir(out) / FILE
    said = (
        f"{path} is the checkpoint of a different command (other data, options or seed); "
        "rerun that command with {0}, or leave out {0} to start over"
    )
    argv = ["train", *files, "--embeddings", "glove-6b-50d", "--out", str(out), "--resume"]
    assert cli_error(capsys, argv) == "--resume: " + said.format("--resume")
    api = api_error(lambda: Checkpointer(checkpoint_dir(out), "this command", resume=True, verbose=False))
    assert api == "resume: " + said.format("resume")
    assert "--" not in api.replace(str(path), "")


def test_sweep_target_out_of_range(files, tmp_path, capsys):
    argv = ["reproduce", *files, "--embeddings", "glove-6b-50d", "--targets", "200", "--out", str(tmp_path / "o")]
    text = "200: must be between 1 and the 96 transitions of 24x4"
    assert cli_error(capsys, argv, rcli.main) == f"--targets {text}"
    assert api_error(lambda: configurations("glove-6b-50d", targets=[200])) == f"targets {text}"


def test_rendering():
    exc = ParameterError("hf_layers", "{hf_layers} last4sum: {x} has 3 states; see {reg_strength}", "reg_strength")
    assert str(exc) == "hf_layers last4sum: {x} has 3 states; see reg_strength"
    assert (
        exc.render(lambda n: "--" + n.replace("_", "-")) == "--hf-layers last4sum: {x} has 3 states; see --reg-strength"
    )
    assert str(ParameterError("layers", "must be >= 1, not {0}")) == "layers: must be >= 1, not {0}"

"""Shared fixtures: tiny datasets built at test time from the shared data (read in place)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _interpret_triton_without_cuda() -> None:
    """Without CUDA the Triton kernels can only run under Triton's interpreter, and Triton
    reads TRITON_INTERPRET when it is first imported: building the C++ kernel imports it
    too (through torch's extension loader), so a test that set the variable later would get
    half-interpreted kernels. Set it before anything imports Triton."""
    if "TRITON_INTERPRET" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


_interpret_triton_without_cuda()


def shared_data_dir() -> Path:
    env = os.environ.get("SPARSE_RATIONAL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "amazon-multi-domain").is_dir():
        pytest.skip(f"shared data not found at {path} (set SPARSE_RATIONAL_DATA)")
    return path


@pytest.fixture(scope="session")
def kitchen(data_dir):
    from sparse_rational.data import load_dataset

    return load_dataset("amazon:kitchen", data_dir, split_seed=0)


def write_tsv(path: Path, examples) -> Path:
    path.write_text("".join(f"{ex.label}\t{' '.join(ex.text.split())}\n" for ex in examples), encoding="utf-8")
    return path


def balanced(examples, n):
    """The first n/2 examples of each of the two labels, interleaved."""
    labels = sorted({ex.label for ex in examples})
    per = [[ex for ex in examples if ex.label == lab][: n // len(labels)] for lab in labels]
    return [ex for group in zip(*per) for ex in group]


@pytest.fixture(scope="session")
def tiny_files(kitchen, tmp_path_factory):
    """160 train / 40 dev / 40 test kitchen reviews as TSV files (labels as strings)."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        "train": write_tsv(root / "train.tsv", balanced(kitchen.train, 160)),
        "dev": write_tsv(root / "dev.tsv", balanced(kitchen.dev, 40)),
        "test": write_tsv(root / "test.tsv", balanced(kitchen.test, 40)),
    }


FAST = ["--epochs", "3", "--patience", "2", "--quiet", "--threads", "1"]


def tiny_args(tiny_files) -> list[str]:
    """The options that train on the tiny kitchen files with GloVe 6B 50d."""
    return [
        "--train",
        str(tiny_files["train"]),
        "--dev",
        str(tiny_files["dev"]),
        "--test",
        str(tiny_files["test"]),
        "--embeddings",
        "glove-6b-50d",
    ]


@pytest.fixture(scope="session")
def baseline(tiny_files, tmp_path_factory):
    """A small model trained by the CLI on the tiny kitchen files (3x2,2x1)."""
    from sparse_rational.cli import main

    out = tmp_path_factory.mktemp("models") / "base"
    code = main(
        [
            "train",
            *tiny_args(tiny_files),
            "--patterns",
            "3x2,2x1",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    return out


@pytest.fixture
def one_thread():
    """Tiny tensors: more torch threads only add contention on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_onehot(path: Path, words) -> str:
    """A GloVe-format text file with a one-hot vector per word (exercises the text loader)."""
    import numpy as np

    eye = np.eye(len(words))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(words, eye)))
    return str(path)

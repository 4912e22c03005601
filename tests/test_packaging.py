"""The installed package installs next to a user's stack: torch as a range, heavy optional
parts in extras, a license, typing marker, version and top-level names."""

import subprocess
import sys
from importlib.metadata import metadata, requires, version
from pathlib import Path

import sparse_rational

REPO = Path(__file__).resolve().parents[1]


def _base_requirements():
    return [r for r in requires("sparse-rational") if "extra ==" not in r]


def test_torch_is_a_range_not_a_pin():
    (torch,) = [r for r in _base_requirements() if r.split("<")[0].split(">")[0].split("=")[0].strip() == "torch"]
    assert "==" not in torch and ">=" in torch and "<" in torch, torch


def test_heavy_parts_are_extras():
    base = " ".join(_base_requirements())
    for name in ("pyarrow", "matplotlib", "scikit-learn", "pandas", "datasets", "tensorboard", "transformers"):
        assert name not in base, name
    extras = [r for r in requires("sparse-rational") if "extra ==" in r]
    assert any(r.startswith("pyarrow") and '"glove"' in r for r in extras)
    assert any(r.startswith("matplotlib") and '"reproduce"' in r for r in extras)
    assert any(r.startswith("scikit-learn") and '"sklearn"' in r for r in extras)
    assert any(r.startswith("tensorboard") and '"tensorboard"' in r for r in extras)


def test_license_version_typing_and_exports():
    meta = metadata("sparse-rational")
    assert meta["License-Expression"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert sparse_rational.__version__ == version("sparse-rational")
    assert (Path(sparse_rational.__file__).parent / "py.typed").is_file()
    from sparse_rational import SparseRationalClassifier, TextClassifier, train_text_classifier

    assert TextClassifier.from_pretrained and SparseRationalClassifier.fit and callable(train_text_classifier)
    assert set(sparse_rational.__all__) >= {"TextClassifier", "SparseRationalClassifier", "train_text_classifier"}


def test_importing_the_package_and_cli_loads_no_torch():
    code = "import sys, sparse_rational, sparse_rational.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr

"""Where a model comes from, saved under ``provenance`` in every metrics.json: the versions
of this package, torch, numpy and Python, the recurrence kernel and the number of threads
used, the date, and the call that made it (the command line, or the Python API call)."""

from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version", "provenance"]


def package_version() -> str:
    """The installed version of sparse-rational ("0+unknown" when run from a bare source tree)."""
    try:
        return version("sparse-rational")
    except PackageNotFoundError:
        return "0+unknown"


def provenance(call: str, embedding_dim: int | None = None, device=None, precision: str = "fp32") -> dict:
    """The provenance record of a run made by ``call`` (e.g. ``"sparse-rational train
    --dataset amazon:kitchen"`` or ``"sparse_rational.train_text_classifier"``) on
    ``device`` (default: the CPU); the kernel is the one ``impl="auto"`` picks there for
    ``embedding_dim``-d input."""
    import numpy  # lazy: start-up (numpy)
    import torch  # lazy: start-up (torch)

    device = torch.device(device or "cpu")
    kernel = None
    if embedding_dim:
        from .ops import choose_impl  # lazy: start-up (torch)

        kernel = choose_impl(torch.empty(1, 1, embedding_dim, device=device))
    return {
        "sparse_rational": package_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
        "kernel": kernel,
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "precision": precision,
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "call": call,
    }

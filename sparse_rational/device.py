"""Where a model computes: ``--device auto|cpu|cuda|cuda:N`` and ``device=`` in the API.

``auto`` is the first CUDA device when torch sees one, else the CPU. The model, its frozen
word vectors, the batches and Adam's state live on the device; transformer vectors stay
memory-mapped on the host and each batch's rows move to the device. Saved models and
checkpoints hold CPU tensors only, so a model trained on a GPU loads on a CPU and the
reverse. The recurrence kernel follows the device (``impl="auto"``: C++ on the CPU,
Triton on CUDA when it compiles, else the PyTorch scan).

Precision (``--precision``): ``fp32`` everywhere (the default); on CUDA also ``bf16`` or
``fp16`` for the input projection (the one matmul over the word vectors, under
``torch.autocast``), with the recurrence and its accumulation in float32. The CPU kernels
compute in float32 only, so there the half types are refused in one line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import ParameterError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_HELP", "PRECISIONS", "check_precision", "resolve_device"]

DEVICE_HELP = "where the model computes: auto (CUDA when available), cpu, cuda or cuda:N (default auto)"
PRECISIONS = ("fp32", "bf16", "fp16")
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` of ``spec``; a CUDA device this machine lacks, or a name
    that is no device, is a :class:`~sparse_rational.errors.ParameterError` (``device``)."""
    import torch  # lazy: start-up (torch)

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    match = _SPEC.match(spec)
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ParameterError("device", f"{spec!r} is not auto, cpu, cuda or cuda:N")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no CUDA device"
        raise ParameterError("device", f"{spec}: {why}; use cpu or auto")
    count = torch.cuda.device_count()
    n = int(index) if index is not None else torch.cuda.current_device()
    if n >= count:
        raise ParameterError("device", f"{spec}: this machine has {count} CUDA device{'s' if count != 1 else ''}")
    return torch.device("cuda", n)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the kernels on ``device`` cannot compute."""
    if precision not in PRECISIONS:
        raise ParameterError("precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        raise ParameterError(
            "precision", f"{precision} needs a CUDA device: the CPU kernels compute in float32 (use fp32)"
        )


def autocast_dtype(precision: str):
    """The autocast dtype of ``precision`` (None for fp32)."""
    import torch  # lazy: start-up (torch)

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

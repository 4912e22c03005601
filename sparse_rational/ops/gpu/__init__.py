"""GPU kernels of the rational recurrence: a Triton kernel with a hand-written backward.

:func:`rational_forward_triton` has the signature of
:func:`sparse_rational.ops.reference.rational_forward_ref` (see :mod:`.triton_wfsa` for the
design). Importing this package never imports Triton: :func:`triton_importable` only looks
for it, the kernel module is imported on the first call, and :func:`triton_available`
compiles and runs a tiny case once per device (forward and backward, every readout) and
reports whether that worked (:func:`triton_error` says why not). Triton ships with the
CUDA builds of PyTorch; nothing extra needs installing.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from typing import cast

import torch
from torch import Tensor

from ...layout import StateLayout
from ..reference import READOUTS, rational_forward_ref

_lock = threading.Lock()
_checked: dict[str, str | None] = {}  # device -> None (works) or the error


def triton_importable() -> bool:
    """Whether the ``triton`` package is installed (without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def rational_forward_triton(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    readout: str = "final",
) -> Tensor:
    """Plus-times states read out per document, ``[B, N]`` (Triton, CUDA; readouts as in
    :mod:`..reference`: ``final`` ``c(T)``, ``mean`` or ``max`` over the real tokens).

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``; ``is_first``: ``[N]`` bool;
    ``mask``: ``[T, B]`` bool (True at real tokens) or None.
    """
    from .triton_wfsa import rational_forward_triton as fn  # lazy: optional (triton)

    return fn(x, w, v, b, is_first, mask, readout=readout)


def rational_steps_triton(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
) -> Tensor:
    """Every step's WFSA scores ``[T, B, d]`` (Triton, CUDA; see
    :func:`..reference.rational_steps_ref`)."""
    from .triton_wfsa import rational_steps_triton as fn  # lazy: optional (triton)

    return fn(x, w, v, b, is_first, mask)


def triton_available(device: torch.device | str = "cuda") -> bool:
    """Compile and run the kernels once on ``device`` (a tiny forward + backward of each
    readout, checked against the reference); False, with the reason in :func:`triton_error`, if that fails."""
    key = str(torch.device(device))
    if key not in _checked:
        with _lock:
            if key not in _checked:
                _checked[key] = _self_test(torch.device(device))
                if _checked[key] is not None:
                    warnings.warn(
                        f"sparse_rational: triton kernel unusable on {key} ({_checked[key]}); using the "
                        "pure-PyTorch scan",
                        RuntimeWarning,
                        stacklevel=4,
                    )
    return _checked[key] is None


def triton_error(device: torch.device | str = "cuda") -> str | None:
    """Why :func:`triton_available` failed on ``device`` (None if it worked or was not tried)."""
    return _checked.get(str(torch.device(device)))


def _self_test(device: torch.device) -> str | None:
    try:
        if not triton_importable():
            return "ModuleNotFoundError: no module named 'triton'"
        with torch.inference_mode(False), torch.enable_grad():  # callers may be in no_grad
            return _self_test_body(device)
    except Exception as exc:  # compiler missing, unsupported GPU, ...
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        return f"{type(exc).__name__}: {(lines or [''])[0][:200]}"


def _self_test_body(device: torch.device) -> str | None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 3, generator=g)
    w, v = torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g)
    b = torch.randn(3, generator=g)
    is_first = torch.tensor([True, False, True])
    mask = torch.tensor([[True, True]] * 4 + [[True, False]])
    for readout in READOUTS:
        want = rational_forward_ref(x, w, v, b, is_first, mask, readout=readout)
        leaf = x.to(device).requires_grad_()
        got = rational_forward_triton(
            leaf, w.to(device), v.to(device), b.to(device), is_first.to(device), mask.to(device), readout=readout
        )
        got.sum().backward()
        if (
            not torch.allclose(got.detach().cpu(), want, atol=1e-4, rtol=1e-4)
            or not torch.isfinite(cast(Tensor, leaf.grad)).all()
        ):
            return f"the triton kernel disagrees with the reference (readout {readout!r})"
    return None


__all__ = ["rational_forward_triton", "rational_steps_triton", "triton_available", "triton_error", "triton_importable"]

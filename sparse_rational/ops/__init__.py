"""The recurrence of a rational RNN layer behind one function, :func:`rational_forward`.

Implementations share the signature of :func:`reference.rational_forward_ref`:
``(x [T,B,e], w [e,N], v [e,N], b [N], is_first [N] bool, mask [T,B] bool | None,
readout="final") -> [B,N]``, and each computes every readout of :data:`READOUTS`, with
``c_s(t)`` the state after token ``t``, ``R_b`` the real tokens of document ``b`` and
``L_b = |R_b|`` (padding never counts; an empty document reads 0)::

    final:  c_s(T_b)                        the last real token (the paper's model)
    mean:   (1 / L_b) sum_{t in R_b} c_s(t)
    max:    max_{t in R_b} c_s(t)           gradient to the first argmax step

=============  ===================================================================
``reference``  one Python loop over time (:mod:`.reference`), any semiring
``scan``       parallel scan over time per state level, custom backward
               (:mod:`.scan`), pure PyTorch, CPU and CUDA
``cpp``        fused C++ CPU kernel (:mod:`.cpu`), built on first use
``triton``     Triton CUDA kernel, hand-written backward (:mod:`.gpu`); registered
               only when ``triton`` is installed and CUDA is available
=============  ===================================================================

``impl="auto"`` (the default) picks ``cpp`` for float32/float64 CPU tensors when the C++
build works (else ``scan``, with a one-line warning), ``triton`` for float32/float64 CUDA
tensors when its kernels compile and pass a tiny self-test (checked once per device), and
``scan`` otherwise. The
environment variable ``SPARSE_RATIONAL_IMPL`` (one of the names above) overrides ``auto``;
an unknown name there (or in ``impl=``) raises :class:`ImplError`, a one-line
:class:`~sparse_rational.errors.UserError` (the command line prints it and exits with 2)
that is also a :class:`ValueError`. Nothing is compiled at import time.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

from ..errors import UserError
from ..layout import StateLayout
from .reference import (
    READOUTS,
    ReadoutError,
    rational_forward_ref,
    rational_steps_ref,
    readout_code,
    reverse_documents,
    semiring_dp,
    shift_states,
    transition_weights,
)
from .scan import rational_forward_scan, rational_steps_scan

IMPLEMENTATIONS = {"reference": rational_forward_ref, "scan": rational_forward_scan}
STEP_IMPLEMENTATIONS = {"reference": rational_steps_ref, "scan": rational_steps_scan}
"""Implementations of :func:`rational_steps` (every step's WFSA scores, the lower layers of a
stacked model); the signature of :func:`reference.rational_steps_ref`."""

try:  # defining the custom op compiles nothing; never let it break the import
    from .cpu import build_error, cpp_available, rational_forward_cpp, rational_steps_cpp

    IMPLEMENTATIONS["cpp"] = rational_forward_cpp
    STEP_IMPLEMENTATIONS["cpp"] = rational_steps_cpp
except Exception as _exc:  # pragma: no cover - depends on the torch build
    _cpu_import_error = f"{type(_exc).__name__}: {_exc}"

    def cpp_available() -> bool:
        return False

    def build_error() -> str | None:
        return _cpu_import_error


try:  # finds triton without importing it; the kernels are compiled on first use
    from .gpu import rational_forward_triton, rational_steps_triton, triton_available, triton_importable

    if triton_importable() and torch.cuda.is_available():
        IMPLEMENTATIONS["triton"] = rational_forward_triton
        STEP_IMPLEMENTATIONS["triton"] = rational_steps_triton
except Exception:  # pragma: no cover - never let an optional GPU path break the import

    def triton_available(device: torch.device | str = "cuda") -> bool:
        return False


ENV_VAR = "SPARSE_RATIONAL_IMPL"
_warned = False


class ImplError(UserError, ValueError):
    """An unknown implementation name; one line. A :class:`UserError` for the command line
    and a :class:`ValueError` for callers that catch that."""


def _choices() -> str:
    return ", ".join(["auto", *sorted(IMPLEMENTATIONS)])


def forced_impl() -> str | None:
    """The implementation ``SPARSE_RATIONAL_IMPL`` forces (None: ``auto``); an unknown name
    is an :class:`ImplError` (the command line checks it before reading any data)."""
    forced = os.environ.get(ENV_VAR, "").strip()
    if not forced or forced == "auto":
        return None
    if forced not in IMPLEMENTATIONS:
        raise ImplError(f"environment variable {ENV_VAR}={forced!r} is not an implementation; use one of: {_choices()}")
    return forced


def choose_impl(x: Tensor) -> str:
    """The implementation ``impl="auto"`` uses for input ``x`` (see module doc)."""
    global _warned
    forced = forced_impl()
    if forced is not None:
        return forced
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        if cpp_available():
            return "cpp"
        if not _warned:
            _warned = True
            warnings.warn(
                f"sparse_rational: C++ kernel unavailable ({build_error()}); using the "
                f"pure-PyTorch scan (set {ENV_VAR}=scan to silence)",
                RuntimeWarning,
                stacklevel=3,
            )
    if (
        x.device.type == "cuda"
        and x.dtype in (torch.float32, torch.float64)
        and "triton" in IMPLEMENTATIONS
        and triton_available(x.device)
    ):
        return "triton"
    return "scan"


def rational_forward(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    impl: str = "auto",
    readout: str = "final",
) -> Tensor:
    """Plus-times WFSA states of each document, ``[B, N]``, read out at its end
    (``readout="final"``) or pooled over its real tokens (``"mean"``, ``"max"``; see the
    module doc). An unknown ``readout`` is a :class:`ReadoutError`."""
    readout_code(readout)  # fail before choosing (or building) an implementation
    name = choose_impl(x) if impl == "auto" else impl
    try:
        fn = IMPLEMENTATIONS[name]
    except KeyError:
        raise ImplError(f"unknown impl {name!r}; use one of: {_choices()}") from None
    return fn(x, w, v, b, is_first, mask, readout=readout)


def rational_steps(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    impl: str = "auto",
) -> Tensor:
    """Every step's WFSA scores ``[T, B, d]`` (``y_j(t) = sum_i c_ji(t)``, zero at padding;
    :func:`reference.rational_steps_ref`). ``impl`` as for :func:`rational_forward`; an
    implementation without a per-step kernel falls back to ``scan``."""
    name = choose_impl(x) if impl == "auto" else impl
    if name not in IMPLEMENTATIONS:
        raise ImplError(f"unknown impl {name!r}; use one of: {_choices()}")
    fn = STEP_IMPLEMENTATIONS.get(name, rational_steps_scan)
    return fn(x, w, v, b, is_first, mask)


__all__ = [
    "ENV_VAR",
    "IMPLEMENTATIONS",
    "ImplError",
    "READOUTS",
    "ReadoutError",
    "build_error",
    "choose_impl",
    "forced_impl",
    "cpp_available",
    "rational_forward",
    "rational_forward_ref",
    "rational_forward_scan",
    "rational_steps",
    "rational_steps_ref",
    "rational_steps_scan",
    "reverse_documents",
    "STEP_IMPLEMENTATIONS",
    "readout_code",
    "semiring_dp",
    "shift_states",
    "transition_weights",
    "triton_available",
]

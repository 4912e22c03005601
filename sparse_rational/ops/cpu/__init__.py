"""Fused C++ CPU kernel of the rational recurrence, built on first use.

:func:`rational_forward_cpp` has the signature of
:func:`sparse_rational.ops.reference.rational_forward_ref`. It computes the projection
``proj = x @ [w | v]`` (``[T, B, 2N]``, one matmul, written directly in the layout the
kernel reads) and then calls the custom operator ``sparse_rational::wfsa_recurrence``,
which fuses ``f = sigmoid(x.v + b)``, ``u = (x.w)(1 - f)`` and the recurrence
``c_s(t) = f_s(t) c_s(t-1) + u_s(t) p_s(t-1)`` (OpenMP over the batch, SIMD over the
states) and has a hand-written backward (the adjoint recurrence, backwards in time).

The operator is registered with :mod:`torch.library` at import time (forward, autograd
via ``register_autograd``, and a fake implementation, so it composes with autograd and
``torch.compile``); the C++ code itself is compiled with
:func:`torch.utils.cpp_extension.load` the first time it runs, into
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/sparse-rational/``. Importing this module never
compiles anything and never fails; :func:`cpp_available` tries the build once and
reports whether it worked (:func:`build_error` says why not).
"""
from __future__ import annotations

import hashlib
import os
import platform
import threading
from pathlib import Path

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("wfsa.cpp")
_lock = threading.Lock()
_state: dict = {"loaded": False, "error": None}


def _cache_dir() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    base = Path(root) if root else Path(os.path.expanduser("~")) / ".cache" / "sparse-rational"
    return base


def _build_tag(cflags: list[str]) -> str:
    """A short hash of the source, the flags, torch's version and the CPU features: every
    version of the kernel gets its own build folder (processes that run an older one keep
    it), and a cache shared between machines never hands a ``-march=native`` build to a CPU
    that lacks its instructions."""
    flags = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags += line
                    break
    except OSError:
        pass
    key = "\0".join([flags, torch.__version__, " ".join(cflags), _SOURCE.read_text()])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _build() -> None:
    from torch.utils import cpp_extension

    cflags = ["-O3", "-fopenmp"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        cflags.append("-march=native")
    name = f"sparse_rational_cpu_{_build_tag(cflags)}"
    build_dir = _cache_dir() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=cflags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=bool(os.environ.get("SPARSE_RATIONAL_VERBOSE_BUILD")),
    )


def _summarise(exc: Exception) -> str:
    """One line: the first compiler error if there is one, else the exception's last line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error" in ln or ln.lower().startswith(("error", "fatal"))]
    return f"{type(exc).__name__}: {(errors or lines or [''])[0][:200]}"


# torch.compiler.disable would import torch._dynamo (~1.5 s) at import time; this is lazy.
_no_dynamo = getattr(torch, "_disable_dynamo", lambda fn: fn)


@_no_dynamo
def cpp_available() -> bool:
    """Build (once per process, cached on disk) and load the kernel; False if that fails."""
    if _state["loaded"]:
        return True
    if _state["error"] is not None:
        return False
    with _lock:
        if not _state["loaded"] and _state["error"] is None:
            try:
                _build()
                _state["loaded"] = True
            except Exception as exc:  # compiler missing, ninja missing, build error, ...
                _state["error"] = _summarise(exc)
    return _state["loaded"]


def build_error() -> str | None:
    """Why the C++ build failed (None if it worked or was not tried yet)."""
    return _state["error"]


def _require() -> None:
    if not cpp_available():
        raise RuntimeError(f"sparse_rational C++ kernel unavailable: {build_error()}")


# --- the operator ---------------------------------------------------------------------


@torch.library.custom_op("sparse_rational::wfsa_recurrence", mutates_args=(), device_types="cpu")
def wfsa_recurrence(
    proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None, save_hist: bool
) -> tuple[Tensor, Tensor]:
    """``proj [T,B,2N]`` (``[x.w | x.v]``), ``bias [N]``, ``is_first [N]`` bool, ``mask [T,B]``
    bool or None -> ``(c(T) [B,N], states [B,T,N])``; ``states`` holds ``c(0..T-1)`` when
    ``save_hist`` (the backward needs them; without, it recomputes them), else it is empty."""
    _require()
    return torch.ops.sparse_rational_cpp.forward(proj, bias, is_first, mask, save_hist)


@wfsa_recurrence.register_fake
def _(proj, bias, is_first, mask, save_hist):
    T, B, N2 = proj.shape
    out = proj.new_empty(B, N2 // 2)
    hist = proj.new_empty(B, T, N2 // 2) if save_hist else proj.new_empty(0)
    return out, hist


@torch.library.custom_op("sparse_rational::wfsa_recurrence_backward", mutates_args=(), device_types="cpu")
def wfsa_recurrence_backward(
    grad: Tensor, proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None, hist: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradients ``(d proj [T,B,2N], d bias [N])`` of ``c(T)`` given ``grad = dL/dc(T)``."""
    _require()
    return torch.ops.sparse_rational_cpp.backward(grad, proj, bias, is_first, mask, hist)


@wfsa_recurrence_backward.register_fake
def _(grad, proj, bias, is_first, mask, hist):
    return torch.empty_like(proj), torch.empty_like(bias)


def _setup_context(ctx, inputs, output):
    proj, bias, is_first, mask, save_hist = inputs
    _, hist = output
    ctx.mark_non_differentiable(hist)
    ctx.save_for_backward(proj, bias, is_first, mask, hist)
    ctx.save_hist = save_hist


def _backward(ctx, grad_c, _grad_hist):
    proj, bias, is_first, mask, hist = ctx.saved_tensors
    if not ctx.save_hist:  # states were not kept: recompute them (one more forward)
        hist = wfsa_recurrence(proj, bias, is_first, mask, True)[1]
    dproj, dbias = wfsa_recurrence_backward(grad_c.contiguous(), proj, bias, is_first, mask, hist)
    return dproj, dbias, None, None, None


wfsa_recurrence.register_autograd(_backward, setup_context=_setup_context)


# --- the public function --------------------------------------------------------------


def rational_forward_cpp(
    x: Tensor, w: Tensor, v: Tensor, b: Tensor, is_first: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Plus-times states at the end of each document, ``c(T)`` ``[B, N]`` (fused C++ kernel).

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``; ``is_first``: ``[N]`` bool;
    ``mask``: ``[T, B]`` bool (True at real tokens) or None. CPU, float32/float64.
    """
    T, B, e = x.shape
    N = w.shape[1]
    W = torch.cat([w, v], dim=1)
    xb = x.transpose(0, 1)
    if xb.is_contiguous() and not x.is_contiguous():
        # batch-first storage (the model's [B, T, e] vectors, transposed): the matmul writes
        # [B, T, 2N] and the kernel reads it through strides, no copy of x
        proj = (xb.reshape(B * T, e) @ W).view(B, T, 2 * N).transpose(0, 1)
    else:
        proj = (x.reshape(T * B, e) @ W).view(T, B, 2 * N)
    is_first = is_first.to(torch.bool)
    if mask is not None:
        mask = mask.to(torch.bool)
    save = torch.is_grad_enabled() and (proj.requires_grad or b.requires_grad)
    return wfsa_recurrence(proj, b, is_first, mask, save)[0]


__all__ = ["build_error", "cpp_available", "rational_forward_cpp", "wfsa_recurrence"]

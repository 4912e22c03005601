"""Fused C++ CPU kernel of the rational recurrence, built on first use.

:func:`rational_forward_cpp` has the signature of
:func:`sparse_rational.ops.reference.rational_forward_ref`. It computes the projection
``proj = x @ [w | v]`` (``[T, B, 2N]``, one matmul, written directly in the layout the
kernel reads) and then calls the custom operator ``sparse_rational::wfsa_recurrence``,
which fuses ``f = sigmoid(x.v + b)``, ``u = (x.w)(1 - f)``, the recurrence
``c_s(t) = f_s(t) c_s(t-1) + u_s(t) p_s(t-1)`` (OpenMP over the batch, SIMD over the
states) and the readout, and has a hand-written backward (the adjoint recurrence,
backwards in time).

**Readouts** (defined in :mod:`..reference`), inside the time loop: ``final`` copies
``c(T_b)``; ``mean`` keeps one more accumulator per state, ``sum_{t real} c_s(t)``, divided
by ``L_b`` at the end; ``max`` keeps the running maximum and its step ``a_s`` (int32
``[B, N]``, the first step reaching the maximum; a third output, kept for the backward).
The backward injects ``y``'s gradient ``G`` into the adjoint where ``y`` reads the states:
``G`` at the last step (final), ``G / L_b`` at every real step (mean), ``G`` at step ``a_s``
(max).

The operator is registered with :mod:`torch.library` at import time (forward, autograd
via ``register_autograd``, and a fake implementation, so it composes with autograd and
``torch.compile``); the C++ code itself is compiled with
:func:`torch.utils.cpp_extension.load` the first time it runs, into
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/sparse-rational/``. Importing this module never
compiles anything and never fails; :func:`cpp_available` tries the build once and
reports whether it worked (:func:`build_error` says why not).

**The cache key.** Each build lives in its own folder ``sparse_rational_cpu_<tag>``;
:func:`_build_tag` hashes everything the compiled library (and ninja's build file) depends
on: the C++ source and its path, the compiler flags and ``$CXX``, the CPU
(``-march=native``), the Python headers, and the identity of the torch installation (the
real path of its package folder, its version, git revision and CUDA/HIP versions, and the
size and modification time of ``libtorch_cpu``).
Several virtual environments, or a reinstalled torch, therefore each get their own build
and never make another one rebuild (ninja rebuilds whenever its build file changes).

**Locking.** :func:`torch.utils.cpp_extension.load` serialises builds with a "baton", a
``lock`` file in the build folder that it creates, builds, and deletes; other processes
wait, forever, for it to disappear. A build killed by SIGKILL or SIGTERM leaves the file
behind and every later process would hang. So every build first takes this module's own
lock, an :func:`fcntl.flock` on ``sparse-rational.flock`` in the build folder (the
operating system releases it when its owner dies, so it never goes stale), waiting at
most ``$SPARSE_RATIONAL_BUILD_WAIT`` seconds (default 120; after 5 s it says once on
stderr that it is waiting). Holding it, no other process can be building, so a ``lock``
file found then was left by an interrupted build: it is removed, with one line on stderr,
once the ninja or compiler processes that such a build may have left running in the
folder have exited. A build that cannot get the lock in time fails; :func:`cpp_available`
returns False, :func:`build_error` says why, and :func:`sparse_rational.ops.choose_impl`
falls back to the scan kernel with a one-line warning.

A successful build writes ``sparse-rational.built`` (the library's size and modification
time) next to the library; a process that finds it matching loads the library directly,
without the lock and without running ninja.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...layout import StateLayout, is_first_tensor
from ...log import get_logger
from ..reference import MAX, readout_code

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are not locked
    fcntl = None  # type: ignore[assignment]  # checked before every use

_SOURCE = Path(__file__).with_name("wfsa.cpp")
_lock = threading.Lock()
_state: dict = {"loaded": False, "error": None}

WAIT_ENV_VAR = "SPARSE_RATIONAL_BUILD_WAIT"
DEFAULT_WAIT = 120.0  # seconds
_NOTE_AFTER = 5.0  # seconds of waiting before saying so on stderr
_POLL = 0.1  # seconds between tries
_FLOCK = "sparse-rational.flock"  # this module's lock, inside the build folder
_BATON = "lock"  # torch.utils.file_baton.FileBaton's file, inside the build folder
_STAMP = "sparse-rational.built"  # written after a successful build and load
_LIB_EXT = ".pyd" if os.name == "nt" else ".so"  # torch.utils.cpp_extension.LIB_EXT


class BuildLockTimeout(RuntimeError):
    """Another process kept the build folder busy for longer than the allowed wait."""


def _cache_dir() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    base = Path(root) if root else Path(os.path.expanduser("~")) / ".cache" / "sparse-rational"
    return base


def _cpu_features() -> str:
    features = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    features += line
                    break
    except OSError:
        pass
    return features


def _torch_identity() -> list[str]:
    """What identifies the torch installation the kernel is compiled and linked against:
    the real path of its package folder, its version, git revision, CUDA/HIP versions, and
    the size and modification time of its core library (a reinstall changes them)."""
    root = Path(os.path.realpath(torch.__file__)).parent
    version = torch.version
    parts = [
        str(root),
        torch.__version__,
        str(getattr(version, "git_version", None)),
        str(getattr(version, "cuda", None)),
        str(getattr(version, "hip", None)),
    ]
    for lib in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll", "libtorch.so"):
        try:
            st = (root / "lib" / lib).stat()
        except OSError:
            continue
        parts.append(f"{lib}:{st.st_size}:{st.st_mtime_ns}")
        break
    return parts


def _build_tag(cflags: list[str]) -> str:
    """A short hash of what the compiled library depends on (see the module doc): every
    version of the kernel gets its own build folder (processes that run an older one keep
    it), a cache shared between machines never hands a ``-march=native`` build to a CPU
    that lacks its instructions, and each torch installation has its own build."""
    key = "\0".join(
        [
            _cpu_features(),
            *_torch_identity(),
            sysconfig.get_paths().get("include", ""),
            os.environ.get("CXX", "c++"),
            " ".join(cflags),
            os.path.realpath(_SOURCE),  # build.ninja names it
            _SOURCE.read_text(),
        ]
    )
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _build_wait() -> float:
    """Seconds to wait for another process's build, from ``$SPARSE_RATIONAL_BUILD_WAIT``."""
    raw = os.environ.get(WAIT_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_WAIT
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ValueError(f"{WAIT_ENV_VAR}={raw!r} is not a number of seconds") from None


def _say(message: str) -> None:
    get_logger(__name__).info(message, extra={"prefixed": True})


@contextlib.contextmanager
def _build_lock(path: Path, deadline: float) -> Iterator[bool]:
    """Hold an exclusive :func:`fcntl.flock` on ``path`` (created if missing), polling
    until ``deadline`` (:func:`time.monotonic`); yields whether the lock is held (False
    where file locks are unsupported: the build then runs unlocked, as torch's own)."""
    if fcntl is None:
        yield False
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start, noted = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                pass
            except OSError:  # e.g. ENOLCK on some network file systems
                locked = False
                break
            now = time.monotonic()
            if now >= deadline:
                raise BuildLockTimeout(
                    f"another process{_holder(fd)} kept building the C++ kernel for "
                    f"{now - start:.0f} s ({path}); set {WAIT_ENV_VAR}=SECONDS to wait longer"
                )
            if not noted and now - start >= _NOTE_AFTER:
                noted = True
                _say(
                    f"waiting up to {deadline - start:.0f} s for another process{_holder(fd)} "
                    f"building the C++ kernel ({path})"
                )
            time.sleep(_POLL)
        if locked:  # for the messages of processes that wait for us
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield locked
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """`` (pid N)``: the process that wrote its id into the lock file, if any."""
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _leftover_builders(build_dir: Path) -> list[int]:
    """Processes other than this one whose working directory is ``build_dir``: the ninja
    and compiler processes of a build whose Python process was killed keep running there
    (Linux ``/proc``; other users' processes cannot be seen, nor are they expected)."""
    target = os.path.realpath(build_dir)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    me = str(os.getpid())
    found = []
    for entry in entries:
        if entry.isdigit() and entry != me:
            try:
                if os.readlink(f"/proc/{entry}/cwd") == target:
                    found.append(int(entry))
            except OSError:  # gone, a zombie, or not ours
                continue
    return found


def _clear_stale_baton(build_dir: Path, deadline: float) -> None:
    """Remove torch's ``lock`` file left by an interrupted build. Only called while
    holding :func:`_build_lock`, so no live process of ours is building; first wait, until
    ``deadline``, for processes that the interrupted build left running in the folder."""
    baton = build_dir / _BATON
    if not baton.exists():
        return
    while pids := _leftover_builders(build_dir):
        if time.monotonic() >= deadline:
            raise BuildLockTimeout(
                f"processes {pids} of an interrupted build are still running in {build_dir}; "
                f"set {WAIT_ENV_VAR}=SECONDS to wait longer"
            )
        time.sleep(_POLL)
    with contextlib.suppress(FileNotFoundError):
        baton.unlink()
        _say(f"removed a stale build lock left by an interrupted build: {baton}")


def _stamp_of(library: Path) -> str:
    st = library.stat()
    return json.dumps({"library": library.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _is_complete(build_dir: Path, library: Path) -> bool:
    """Whether ``library`` is the one a successful build stamped."""
    try:
        return (build_dir / _STAMP).read_text() == _stamp_of(library)
    except OSError:
        return False


def _write_stamp(build_dir: Path, library: Path) -> None:
    tmp = build_dir / f"{_STAMP}.{os.getpid()}.tmp"
    tmp.write_text(_stamp_of(library))
    os.replace(tmp, build_dir / _STAMP)


def _build() -> None:
    # -fno-trapping-math: GCC (12) if-converts the selects of the per-state loops, and so
    # vectorises them, only when it may assume that no floating-point operation traps
    cflags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        cflags.append("-march=native")
    name = f"sparse_rational_cpu_{_build_tag(cflags)}"
    build_dir = _cache_dir() / name
    library = build_dir / f"{name}{_LIB_EXT}"
    if _is_complete(build_dir, library):  # built before: no lock, no ninja
        try:
            torch.ops.load_library(str(library))
            return
        except Exception:  # let the full path below rebuild it or say what is wrong
            pass
    deadline = time.monotonic() + _build_wait()
    build_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(build_dir / _FLOCK, deadline) as locked:
        if locked:
            if _is_complete(build_dir, library):  # the process we waited for built it
                torch.ops.load_library(str(library))
                return
            _clear_stale_baton(build_dir, deadline)
        from torch.utils import cpp_extension  # lazy: start-up (torch.utils.cpp_extension)

        cpp_extension.load(
            name=name,
            sources=[str(_SOURCE)],
            extra_cflags=cflags,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            is_python_module=False,
            verbose=bool(os.environ.get("SPARSE_RATIONAL_VERBOSE_BUILD")),
        )
        if locked:
            _write_stamp(build_dir, library)


def _summarise(exc: Exception) -> str:
    """One line: the first compiler error if there is one, else the exception's last line."""
    if isinstance(exc, BuildLockTimeout):  # ours, already one line
        return f"{type(exc).__name__}: {exc}"
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
    proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None, save_hist: bool, readout: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``proj [T,B,2N]`` (``[x.w | x.v]``), ``bias [N]``, ``is_first [N]`` bool, ``mask [T,B]``
    bool or None, ``readout`` (one of :data:`..reference.READOUTS`) -> ``(y [B,N], states
    [B,T,N], argmax [B,N] int32)``; ``states`` holds ``c(0..T-1)`` when ``save_hist`` (the
    backward needs them; without, it recomputes them), else it is empty; ``argmax`` holds
    the step of each maximum (-1 in an empty document) for ``readout="max"``, else it is
    empty."""
    _require()
    return torch.ops.sparse_rational_cpp.forward(proj, bias, is_first, mask, save_hist, readout_code(readout))


@wfsa_recurrence.register_fake
def _(
    proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None, save_hist: bool, readout: str
) -> tuple[Tensor, Tensor, Tensor]:
    T, B, N2 = proj.shape
    N = N2 // 2
    out = proj.new_empty(B, N)
    hist = proj.new_empty(B, T, N) if save_hist else proj.new_empty(0)
    shape = (B, N) if readout_code(readout) == MAX else (0, 0)
    return out, hist, proj.new_empty(shape, dtype=torch.int32)


@torch.library.custom_op("sparse_rational::wfsa_recurrence_backward", mutates_args=(), device_types="cpu")
def wfsa_recurrence_backward(
    grad: Tensor,
    proj: Tensor,
    bias: Tensor,
    is_first: Tensor,
    mask: Tensor | None,
    hist: Tensor,
    argmax: Tensor,
    readout: str,
) -> tuple[Tensor, Tensor]:
    """Gradients ``(d proj [T,B,2N], d bias [N])`` of ``y`` given ``grad = dL/dy``, from the
    states ``hist`` and (max readout) the ``argmax`` steps of the forward."""
    _require()
    return torch.ops.sparse_rational_cpp.backward(grad, proj, bias, is_first, mask, hist, argmax, readout_code(readout))


@wfsa_recurrence_backward.register_fake
def _(
    grad: Tensor,
    proj: Tensor,
    bias: Tensor,
    is_first: Tensor,
    mask: Tensor | None,
    hist: Tensor,
    argmax: Tensor,
    readout: str,
) -> tuple[Tensor, Tensor]:
    return torch.empty_like(proj), torch.empty_like(bias)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
    proj, bias, is_first, mask, save_hist, readout = inputs
    _, hist, argmax = output
    ctx.mark_non_differentiable(hist, argmax)
    ctx.save_for_backward(proj, bias, is_first, mask, hist, argmax)
    ctx.save_hist, ctx.readout = save_hist, readout


def _backward(
    ctx: Any, grad_y: Tensor, _grad_hist: Tensor | None, _grad_argmax: Tensor | None
) -> tuple[Tensor, Tensor, None, None, None, None]:
    proj, bias, is_first, mask, hist, argmax = ctx.saved_tensors
    if not ctx.save_hist:  # states were not kept: recompute them (one more forward)
        hist = wfsa_recurrence(proj, bias, is_first, mask, True, ctx.readout)[1]
    dproj, dbias = wfsa_recurrence_backward(grad_y.contiguous(), proj, bias, is_first, mask, hist, argmax, ctx.readout)
    return dproj, dbias, None, None, None, None


wfsa_recurrence.register_autograd(_backward, setup_context=_setup_context)


# --- the public function --------------------------------------------------------------


def rational_forward_cpp(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
    readout: str = "final",
) -> Tensor:
    """Plus-times states read out per document, ``[B, N]`` (fused C++ kernel; readouts as in
    :mod:`..reference`: ``final`` ``c(T)``, ``mean`` or ``max`` over the real tokens).

    ``x``: ``[T, B, e]``; ``w, v``: ``[e, N]``; ``b``: ``[N]``; ``is_first``: ``[N]`` bool;
    ``mask``: ``[T, B]`` bool (True at real tokens) or None. CPU, float32/float64.
    """
    readout_code(readout)
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
    is_first = is_first_tensor(is_first, proj.device)
    if mask is not None:
        mask = mask.to(torch.bool)
    save = torch.is_grad_enabled() and (proj.requires_grad or b.requires_grad)
    return wfsa_recurrence(proj, b, is_first, mask, save, readout)[0]


STEPS = 3  # the kernel's code for "every step" (wfsa.cpp, kSteps): not a readout of READOUTS


@torch.library.custom_op("sparse_rational::wfsa_steps", mutates_args=(), device_types="cpu")
def wfsa_steps(proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``proj [T,B,2N]``, ``bias [N]``, ``is_first [N]``, ``mask [T,B]`` or None -> ``(states
    [B,T,N], saved [B,T,N])``: ``c(t)`` after every step (carried over at padding), and
    ``c(0..T-1)`` one step earlier, kept for the backward. The forward is the kernel's
    ``final`` pass with its saved states; the backward injects ``dL/dc(t)`` at every step."""
    _require()
    final, hist, _ = torch.ops.sparse_rational_cpp.forward(proj, bias, is_first, mask, True, 0)
    return torch.cat([hist[:, 1:], final[:, None]], dim=1), hist


@wfsa_steps.register_fake
def _(proj: Tensor, bias: Tensor, is_first: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    T, B, N2 = proj.shape
    return proj.new_empty(B, T, N2 // 2), proj.new_empty(B, T, N2 // 2)


def _steps_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    proj, bias, is_first, mask = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(proj, bias, is_first, mask, output[1])


def _steps_backward(ctx: Any, grad: Tensor, _grad_hist: Tensor | None) -> tuple[Tensor, Tensor, None, None]:
    proj, bias, is_first, mask, hist = ctx.saved_tensors
    none = torch.empty(0, 0, dtype=torch.int32)
    dproj, dbias = torch.ops.sparse_rational_cpp.backward(
        grad.contiguous(), proj, bias, is_first, mask, hist, none, STEPS
    )
    return dproj, dbias, None, None


wfsa_steps.register_autograd(_steps_backward, setup_context=_steps_setup)


def rational_steps_cpp(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor | StateLayout,
    mask: Tensor | None = None,
) -> Tensor:
    """Every step's WFSA scores ``[T, B, d]`` (:func:`..reference.rational_steps_ref`; zero
    at padding) from the fused C++ kernel, with its hand-written backward."""
    layout = StateLayout.from_is_first(is_first)
    T, B, e = x.shape
    N, d = w.shape[1], len(layout.structure)
    if T == 0 or N == 0:
        return x.new_zeros(T, B, d)
    proj = (x.reshape(T * B, e) @ torch.cat([w, v], dim=1)).view(T, B, 2 * N)
    if mask is not None:
        mask = mask.to(torch.bool)
    states = wfsa_steps(proj, b, layout.is_first(proj.device), mask)[0]  # [B, T, N]
    owner = layout.owner(proj.device)
    member = (owner[:, None] == torch.arange(d, device=owner.device)).to(states.dtype)  # [N, d]
    y = (states @ member).transpose(0, 1)  # [T, B, d]: one matmul sums each WFSA's states
    return y if mask is None else torch.where(mask[..., None], y, 0.0)


__all__ = [
    "BuildLockTimeout",
    "WAIT_ENV_VAR",
    "build_error",
    "cpp_available",
    "rational_forward_cpp",
    "rational_steps_cpp",
    "wfsa_recurrence",
    "wfsa_steps",
]

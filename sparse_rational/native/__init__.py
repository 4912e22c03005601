"""Compiled kernels without PyTorch, for prediction: ``folded.c`` through :mod:`ctypes`.

The PyTorch-free predictor (:mod:`sparse_rational.folded`) runs its recurrence and the
chunk lookup of its tokenizer here when a C compiler is at hand, and in numpy otherwise
(the same numbers to the bit: the C code does the numpy path's float32 operations in the
same order, without fused multiply-adds).

The library is compiled on first use with ``$CC`` (default ``cc``), ``-O3``, into
``$XDG_CACHE_HOME/sparse-rational/native/<hash>/`` (``~/.cache/...``), the hash covering
the source, the compiler, its flags and the machine; a build is written to a temporary
name and renamed into place, so processes that build at the same time never see half a
library and never wait for each other. ``SPARSE_RATIONAL_NATIVE=0`` turns the compiled
path off; a failed build is said once with ``--verbose`` and leaves the numpy path.
Importing this module compiles nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..log import get_logger

__all__ = ["ChunkMemo", "available", "build_error", "states", "tokens"]

ENV_VAR = "SPARSE_RATIONAL_NATIVE"
SOURCE = Path(__file__).with_name("folded.c")
# -ffp-contract=off: no fused multiply-add, so f*c + u*c' rounds as numpy's does
CFLAGS = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno", "-std=c99"]
READOUT_CODES = {"final": 0, "mean": 1, "max": 2}

_lock = threading.Lock()
_state: dict = {"lib": None, "error": None, "tried": False}
_P = ctypes.c_void_p
_I = ctypes.c_int64


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparse-rational" / "native"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "").strip() or "cc")


def _tag() -> str:
    parts = [SOURCE.read_text(), " ".join(_compiler()), " ".join(CFLAGS)]
    key = "\0".join([*parts, platform.machine(), sys.platform, str(ctypes.sizeof(_P))])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


class BuildFailed(Exception):
    """The compiler could not build the library (the message says how)."""


def _build() -> Path:
    """The compiled library, built now if the cache lacks it (raises OSError or
    :class:`BuildFailed` when it cannot be built)."""
    folder = _cache_root() / _tag()
    lib = folder / ("folded.dll" if os.name == "nt" else "folded.so")
    if lib.is_file():
        return lib
    import subprocess  # lazy: start-up (the library is built once, loaded every time)
    import tempfile  # lazy: start-up (as above)

    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".folded-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        subprocess.run(
            [*_compiler(), *CFLAGS, "-o", tmp, str(SOURCE)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.replace(tmp, lib)
    except subprocess.CalledProcessError as exc:
        raise BuildFailed(f"{' '.join(exc.cmd[:1])} failed: {(exc.stderr or '').strip()[-300:]}") from None
    except subprocess.SubprocessError as exc:  # the compiler ran past its time
        raise BuildFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    signatures = {
        "sr_states": (_I, [_P, _P, _I, _P, _I, _I, _P, ctypes.c_int32, _P]),
        "sr_memo_new": (_P, []),
        "sr_memo_free": (None, [_P]),
        "sr_memo_clear": (None, [_P]),
        "sr_memo_size": (_I, [_P]),
        "sr_memo_put": (_I, [_P, ctypes.c_char_p, _I, _I]),
        "sr_count_chunks": (_I, [_P, _I]),
        "sr_chunks": (_I, [_P, _P, _I, _P, _P, _P, _I, _P, _I]),
        "sr_tokens": (_I, [_P, _I, _P, _I]),
        "sr_memo_put_many": (_I, [_P, _P, _P, _P, _I]),
        "sr_learn": (_I, [_P, _P, _I, _P, _P, _I, _I, _P, _P, _I]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded library, built on first use; None when ``$SPARSE_RATIONAL_NATIVE`` is
    ``0`` or the build failed (:func:`build_error` says why)."""
    if os.environ.get(ENV_VAR, "").strip().lower() in ("0", "off", "false", "no", "numpy"):
        return None
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["lib"] = _bind(ctypes.CDLL(str(_build())))
            except BuildFailed as exc:
                _state["error"] = str(exc)
            except (OSError, AttributeError) as exc:
                _state["error"] = f"{type(exc).__name__}: {exc}"
            if _state["error"]:
                get_logger(__name__).debug("compiled prediction kernels unavailable (%s); numpy runs", _state["error"])
        return _state["lib"]


def available() -> bool:
    """Whether the compiled kernels can run here (builds them on first call)."""
    return library() is not None


def build_error() -> str | None:
    """Why the last build failed (None: it did not, or was not tried)."""
    return _state["error"]


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def tokens(lib: ctypes.CDLL, text: str) -> list[str] | None:
    """``_TOKEN_RE.findall(text)`` of :mod:`sparse_rational.data.tokenize`, found in C
    (``sr_tokens``), or None when ``text`` is not ASCII or holds ``\x01`` (the regular
    expression runs)."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    out = ctypes.create_string_buffer(2 * len(data) + 1)
    size = lib.sr_tokens(data, len(data), out, len(out))
    if size < 0:
        return None
    return out.raw[:size].decode("ascii").split("\x01")[:-1]


def states(
    lib: ctypes.CDLL,
    ids: np.ndarray,
    lengths: np.ndarray,
    fu: np.ndarray,
    first: np.ndarray,
    readout: str,
) -> np.ndarray:
    """The read-out states ``[n, N]`` float32 of ``n`` documents (token rows one after another
    in ``ids``, ``lengths[i]`` of them for document ``i``) over the folded table ``fu``
    (``[V, 2N]`` float32: every token's f, then its u), ``first[j]`` 1 at each WFSA's first
    state (int32); see :meth:`sparse_rational.folded.FoldedModel.states`."""
    ids = np.ascontiguousarray(ids, np.int64)
    lengths = np.ascontiguousarray(lengths, np.int64)
    first = np.ascontiguousarray(first, np.int32)
    if int(lengths.sum()) != len(ids) or (len(lengths) and lengths.min() < 0):
        raise ValueError(f"{len(ids)} token ids for document lengths summing to {int(lengths.sum())}")
    vocab, n = fu.shape[0], fu.shape[1] // 2
    if not (fu.dtype == np.float32 and fu.flags.c_contiguous):
        raise TypeError("the table must be a C-contiguous float32 array")
    if fu.shape[1] != 2 * n or first.shape != (n,):
        raise ValueError(f"a table {fu.shape} with {first.shape[0]} first-state flags")
    out = np.empty((len(lengths), n), np.float32)
    if not len(lengths) or not n:
        return out
    status = lib.sr_states(
        _ptr(ids), _ptr(lengths), len(lengths), _ptr(fu), vocab, n, _ptr(first), READOUT_CODES[readout], _ptr(out)
    )
    if status == -3:
        raise ValueError(f"a token id outside the table of {vocab} rows")
    if status < 0:
        raise MemoryError("sr_states: out of memory") if status == -2 else ValueError(f"sr_states failed ({status})")
    return out


class ChunkMemo:
    """Chunks of normalised text (UTF-8 bytes without whitespace) -> integer codes, in C;
    :meth:`chunks` splits a buffer as :meth:`str.split` does and looks every chunk up."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        self._memo = lib.sr_memo_new()
        if not self._memo:
            raise MemoryError("sr_memo_new: out of memory")

    def __del__(self) -> None:
        memo, self._memo = getattr(self, "_memo", None), None
        if memo:
            self._lib.sr_memo_free(memo)

    def __len__(self) -> int:
        return int(self._lib.sr_memo_size(self._memo))

    def __reduce__(self):  # a copy would free the same C memory twice
        raise TypeError("a ChunkMemo holds C memory and cannot be copied or pickled")

    def clear(self) -> None:
        self._lib.sr_memo_clear(self._memo)

    def put(self, chunk: bytes, code: int) -> None:
        if self._lib.sr_memo_put(self._memo, chunk, len(chunk), code) < 0:
            raise MemoryError("sr_memo_put: out of memory")

    def chunks(self, buf: bytes, next_code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(codes, new_start, new_size)``: the code of every chunk of ``buf``; a chunk not
        in the memo is added with the next code (``next_code``, ``next_code + 1``, ... in
        the order first met), and its byte offset and size are in ``new_start, new_size``."""
        cap = int(self._lib.sr_count_chunks(buf, len(buf)))
        codes = np.empty(cap, np.int64)
        starts, sizes = np.empty(cap, np.int64), np.empty(cap, np.int64)
        added = ctypes.c_int64(0)
        count = self._lib.sr_chunks(
            self._memo, buf, len(buf), _ptr(codes), _ptr(starts), _ptr(sizes), cap, ctypes.byref(added), next_code
        )
        if count == -2:
            raise MemoryError("sr_chunks: out of memory")
        if count != cap:  # pragma: no cover - both count the same way
            raise RuntimeError(f"sr_chunks: {count} chunks, {cap} counted")
        m = added.value
        return codes, starts[:m], sizes[:m]

    def put_many(self, keys: Sequence[str], codes: Sequence[int]) -> None:
        """:meth:`put` of every key (its UTF-8 bytes) with its code, in one call."""
        data = [k.encode("utf-8", "surrogatepass") for k in keys]
        offsets = np.zeros(len(data) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, data), np.int64, len(data)), out=offsets[1:])
        values = np.ascontiguousarray(codes, np.int64)
        if len(values) != len(data) or (len(values) and values.min() < 0):
            raise ValueError("one code >= 0 per key")
        if self._lib.sr_memo_put_many(self._memo, b"".join(data), _ptr(offsets), _ptr(values), len(data)) < 0:
            raise MemoryError("sr_memo_put_many: out of memory")

    def learn(self, buf: bytes, starts: np.ndarray, sizes: np.ndarray, missing: int) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, ids)``: the tokens of the chunks ``buf[starts[j] : starts[j] + sizes[j]]``
        looked up in this memo (a vocabulary; ``missing`` for a token it lacks): ``counts[j]``
        tokens each, their ids one chunk after another; ``counts[j]`` is -1 for a chunk that
        is not ASCII (it has no ids here: the caller tokenizes it), see ``sr_learn``."""
        starts = np.ascontiguousarray(starts, np.int64)
        sizes = np.ascontiguousarray(sizes, np.int64)
        counts = np.empty(len(starts), np.int64)
        cap = int(sizes.sum())
        ids = np.empty(cap, np.int64)
        total = self._lib.sr_learn(
            self._memo, buf, len(buf), _ptr(starts), _ptr(sizes), len(starts), missing, _ptr(counts), _ptr(ids), cap
        )
        if total < 0:  # pragma: no cover - the chunks' bytes always suffice
            raise RuntimeError(f"sr_learn: {cap} ids were too few")
        return counts, ids[:total]

"""Atomic writes: nothing that was saved is ever lost or half-written.

Files are written to a temporary name in the same folder, flushed, then renamed over the
target; a model folder is built in a temporary sibling folder and swapped into place.
An error while writing names the user's path, never the temporary one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` (disk full, permissions, ...) with ``path`` as its file name."""
    try:
        yield
    except OSError as exc:
        if exc.filename == str(path):
            raise
        raise OSError(exc.errno or errno.EIO, exc.strerror or str(exc), str(path)) from None


_DESCRIPTOR = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")
_STANDARD = {"/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(path: Path) -> int | None:
    """The descriptor of this process that ``path`` names (``/dev/stdout``, ``/dev/fd/3``),
    or None. Written with ``os.write``, at the descriptor's own offset: renaming a file over
    it replaced the link in ``/dev`` (as root), and opening it anew wrote from offset 0 of
    a file it is redirected to, under what the command prints after."""
    name = os.path.abspath(path)
    if name in _STANDARD:
        return _STANDARD[name]
    match = _DESCRIPTOR.fullmatch(name)
    return int(match[1]) if match else None


def _is_stream(path: Path) -> bool:
    """``path`` (after its links) is a device, a FIFO or a socket: ``/dev/null``, a shell's
    ``>(command)``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (yet), or not reachable: the rename says what is wrong
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file and a rename; a device or a FIFO
    (``/dev/stdout``, ``>(command)``) is written into, never replaced by a file."""
    path = Path(path)
    with _naming(path):
        fd = _descriptor(path)
        if fd is not None:
            for stream in (sys.stdout, sys.stderr):  # what the command printed comes first
                if stream is not None:
                    stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            return
        if _is_stream(path):
            with open(path, "wb") as fh:
                fh.write(data)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


_SURROGATE = re.compile("[\ud800-\udfff]")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` as UTF-8; a lone surrogate (a file name's undecodable byte, as
    ``os.fsdecode`` gives it) is written as the escape ``\\udcff``: text, not a crash."""
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def json_text(obj, indent: int | None = 2) -> str:
    """``obj`` as JSON (non-ASCII kept as it is), with every lone surrogate written as a JSON
    escape: a path holding bytes that are not UTF-8 (``os.fsdecode``'s ``surrogateescape``)
    is recorded losslessly, and ``os.fsencode(json.loads(...))`` gives its bytes back."""
    separators = None if indent else (",", ":")
    text = json.dumps(obj, indent=indent, separators=separators, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, json_text(obj, indent) + "\n")


def is_inside_cwd(path: str | os.PathLike) -> bool:
    """True if ``path`` is the current folder or one of its parents (it cannot be swapped)."""
    target = Path(path).resolve()
    cwd = Path.cwd().resolve()
    return target == cwd or target in cwd.parents


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (an old folder is kept
    until the new one is in place), on failure it is removed and ``path`` is untouched.

    The caller decides whether an existing ``path`` may be replaced (see
    :func:`sparse_rational.pipeline.check_out_folder`)."""
    if os.path.islink(path):  # written through: the folder the link points to is replaced
        path = os.path.realpath(path)
    path = Path(os.path.abspath(path))  # "runs/x/." or "." resolve to a name that can be renamed
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        with _naming(path):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with _naming(path):
        old = None
        try:
            if path.exists():
                old = path.parent / f".{path.name}.old-{os.getpid()}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
        except BaseException:
            if old is not None and not path.exists():
                os.replace(old, path)  # put the old folder back
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

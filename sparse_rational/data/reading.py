"""Examples and splits, and reading a data file: its bytes, its encoding, its lines, and
one-line error messages ``FILE:LINE: what is wrong`` (:class:`DataError`).

Everything that can go wrong with a file raises :class:`DataError` (a :class:`UserError`)
whose message is one line; nothing else escapes, whatever the bytes in the file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from sparse_rational.errors import DataError
from sparse_rational.errors import one_line as _one_line
from sparse_rational.warn import warn


@dataclass(frozen=True)
class Example:
    """One labelled document. Labels are strings (any values, any number of classes)."""

    text: str
    label: str


@dataclass(frozen=True)
class Splits:
    """Train / dev / test examples. ``test`` may be empty."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]


# ----------------------------------------------------------------------------------------
# Messages, reading, decoding


# Characters that end a line for str.splitlines(), plus the other C0/C1 controls.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _show(path: str | os.PathLike) -> str:
    """The path as the user wrote it; quoted with escapes if it would break the line."""
    text = os.fspath(path)
    if isinstance(text, bytes):  # a bytes path: show it decoded, never raw
        text = text.decode("utf-8", "backslashreplace")
    return repr(text) if _LINE_BREAKING.search(text) else text


def _error(path, line: int | None, what: str) -> DataError:
    where = _show(path) if line is None else f"{_show(path)}:{line}"
    return DataError(f"{where}: {_one_line(what)}")


def _snippet(text: str, limit: int = 40) -> str:
    text = _one_line(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def is_device(handle) -> bool:
    """``handle`` reads a device (``/dev/zero``, ``/dev/urandom``): an end that never comes,
    read into memory until the machine runs out of it. A FIFO (``<(zcat ...)``) ends."""
    mode = os.fstat(handle.fileno()).st_mode
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _read_bytes(path) -> bytes:
    try:
        if os.path.isdir(path):
            raise _error(path, None, "is a directory, not a data file")
        with open(path, "rb") as handle:
            if is_device(handle):
                raise _error(path, None, "is a device, not a data file")
            return handle.read()
    except DataError:
        raise
    except FileNotFoundError:
        raise _error(path, None, "no such file") from None
    except PermissionError:
        raise _error(path, None, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _error(path, None, f"cannot read file ({reason})") from None


def _line_of(data: bytes | str, offset: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, offset) + 1
    return data.count("\n", 0, offset) + 1


def _decode(data: bytes, path, *, lenient: bool, strict: bool = False) -> str:
    """Bytes -> text.

    The user's files (``lenient=False``) are UTF-8 (a BOM is dropped), never guessed to be
    another encoding: a file whose bytes are not all UTF-8 is a DataError ``FILE:LINE``
    naming the first bad line, unless the bad bytes sit on at most 1 % of its lines (a
    few corrupt bytes in a UTF-8 file): those become U+FFFD, with a warning that names
    the file, the first line and the count. ``strict`` refuses any bad byte.

    The benchmarks' files (``lenient=True``), whose encodings are known: UTF-8, where a
    few corrupt bytes (FDU-MTL's ``dvd.task.train``) become U+FFFD; otherwise cp1252
    (FDU-MTL's ``MR`` files), then latin-1, which never fails. A NUL byte means "not a
    text file" (UTF-16, a compressed file, ...) and is a DataError either way.
    """
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _error(path, _line_of(data, nul), "contains a NUL byte: not a text file (save it as UTF-8 text)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    replaced = data.decode("utf-8", errors="replace")
    if not lenient:
        lines = data.split(b"\n")
        bad = [k for k, line in enumerate(lines, 1) if _not_utf8(line)]
        first = _line_of(data, first_bad)
        byte = data[first_bad : first_bad + 1].hex()
        if strict or len(bad) > len(lines) // 100:
            raise _error(
                path,
                first,
                f"cannot decode the text: byte 0x{byte} is not UTF-8 ({len(bad)} line(s) hold such bytes); "
                "save the file as UTF-8 (e.g. iconv -f cp1252 -t utf-8)",
            )
        warn(
            f"{_show(path)}:{first}: byte 0x{byte} is not UTF-8; the bad bytes of {len(bad)} line(s) "
            "were read as U+FFFD (save the file as UTF-8, or use --strict to refuse such a file)"
        )
        return replaced
    n_bad = replaced.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    n_non_ascii = len(replaced) - len(replaced.encode("ascii", "ignore"))
    n_good = n_non_ascii - replaced.count("\ufffd")
    if n_good >= 10 * max(n_bad, 1):
        return replaced
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _lines(text: str) -> list[str]:
    """Split on "\\n" only: never on U+0085 / U+2028 (MR and imdb hold such characters
    inside lines). A trailing "\\r" is dropped from every line (Windows files)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]

"""Reading ``predict``'s input: one text per line, in bounded memory, whatever the input.

The input (a file or standard input) is read in blocks, a block being what one read
returns (at most :data:`BLOCK` bytes, 64 KiB; a pipe's lines are scored as they come). The whole
lines of a block are split and decoded at once (:func:`decode_lines`), one at a time only
in a block holding a line to cut or bytes that are not UTF-8. With ``max_chars``, a line of
``4 * (max_chars + 1)`` bytes or more keeps only its first ``max_chars + 1`` characters (the
model cuts it to ``max_chars`` and counts it as cut) and the rest of it is skipped as it is
read: memory stays bounded, a line of gigabytes or /dev/zero alike. A line's ending (``\\n``
or ``\\r\\n``) is not part of its text; a line that is not UTF-8 is named ``FILE:LINE``.

Two readers: :func:`line_batches`, lists of texts (one process), and, for ``predict
--workers``, :func:`range_lines`: the lines that start in a range of a regular file's bytes,
read by the worker that scores them, so that the parent reads nothing; a pipe's lines are
read by the parent in batches of undecoded lines (:func:`byte_batches`) that it sends to
the workers as they are, each decoding its own (:func:`decode_lines`).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

from .errors import UserError

BLOCK = 1 << 16  # bytes per read


def input_name(source: str) -> str:
    """How messages name ``predict``'s input (``-``: standard input)."""
    return "<stdin>" if source == "-" else source


def open_input(source: str) -> tuple[BinaryIO, str]:
    """``(binary file, name for messages)`` of ``predict``'s input (``-``: standard input)."""
    if source == "-":
        if sys.stdin is None:
            raise UserError("predict: standard input is closed; give a file or pipe texts in")
        return sys.stdin.buffer, input_name(source)
    try:
        return open(source, "rb"), source
    except OSError as exc:
        raise UserError(f"{source}: cannot read ({exc.strerror or exc})") from None


@contextlib.contextmanager
def reading(source: str | tuple[BinaryIO, str]) -> Iterator[tuple[BinaryIO, str]]:
    """:func:`open_input` for a ``with`` block (or the ``(file, name)`` it returned, which
    its caller closes): a read error in it is one line naming the input (:class:`UserError`),
    and a file it opened is closed at its end (standard input is not)."""
    fh, name = open_input(source) if isinstance(source, str) else source
    try:
        yield fh, name
    except OSError as exc:
        raise UserError(f"{name}: cannot read ({exc.strerror or exc})") from None
    finally:
        if isinstance(source, str) and fh is not sys.stdin.buffer:
            fh.close()


def _limit(max_chars: int) -> int:
    return 4 * (max_chars + 1) if max_chars > 0 else 0  # bytes: UTF-8 takes at most 4 per character


def raw_blocks(fh: BinaryIO, max_chars: int) -> Iterator[tuple[int, bytes, int]]:
    """``(lines before, lines, count)`` per block read: ``count`` whole lines joined by
    newlines (without the last one's), a line too long to keep cut to its first
    ``4 * (max_chars + 1)`` bytes (a block of its own; the rest of it is skipped)."""
    limit = _limit(max_chars)
    read = getattr(fh, "read1", None) or fh.read  # what is there: a pipe's lines are scored as they come
    number = 0  # lines before the block
    pending = b""  # the start of a line whose end is not read yet
    skipping = False  # in the rest of a line that was cut
    while True:
        data = read(BLOCK)
        if not data:
            break
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            data, skipping = data[end + 1 :], False
        data = pending + data if pending else data
        end = data.rfind(b"\n")
        if end >= 0:
            head, pending = data[:end], data[end + 1 :]
            count = head.count(b"\n") + 1
            yield number, head, count
            number += count
        else:
            pending = data
        if limit and len(pending) >= limit:  # a line too long to keep: its start, then skip the rest
            yield number, pending[:limit], 1
            number += 1
            pending, skipping = b"", True
    if pending:
        yield number, pending, 1


def decode_lines(lines: bytes, before: int, name: str, max_chars: int) -> tuple[list[str], UserError | None]:
    """The texts of ``lines`` (whole lines joined by newlines, the last without its own, the
    first being line ``before + 1`` of ``name``), and the error of a line that is not UTF-8
    (None if none): the texts are those of the lines before it."""
    limit = _limit(max_chars)
    if not limit or len(lines) < limit or max(map(len, lines.split(b"\n"))) < limit:
        try:
            text = lines.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            texts = text.split("\n")
            if "\r" in text:
                texts = [t.removesuffix("\r") for t in texts]
            return texts, None
    texts = []
    for k, raw in enumerate(lines.split(b"\n")):  # one at a time
        cut = 0 < limit <= len(raw)
        try:  # a cut line may end inside a character: that part is left out
            text = codecs.getincrementaldecoder("utf-8")().decode(raw[:limit] if cut else raw, final=not cut)
        except UnicodeDecodeError:
            return texts, UserError(f"{name}:{before + k + 1}: not UTF-8 text")
        texts.append((text[: max_chars + 1] if cut else text).removesuffix("\r"))
    return texts, None


def line_batches(source: str, size: int, max_chars: int = 0) -> Iterator[list[str]]:
    """Lists of ``size`` texts (the last may hold fewer) of the lines of ``source`` (module
    doc). A line that is not UTF-8 raises :class:`UserError` naming it, after the texts
    of every line before it."""
    batch: list[str] = []
    with reading(source) as (fh, name):
        for before, lines, _ in raw_blocks(fh, max_chars):
            texts, error = decode_lines(lines, before, name, max_chars)
            batch += texts
            if len(batch) >= size or (error is not None and batch):
                whole = len(batch) - len(batch) % size if error is None else len(batch)
                for start in range(0, whole, size):
                    yield batch[start : start + size]
                del batch[:whole]
            if error is not None:
                raise error
    if batch:
        yield batch


def byte_batches(source: str | tuple[BinaryIO, str], size: int, max_chars: int = 0) -> Iterator[tuple[int, bytes, int]]:
    """:func:`line_batches` undecoded: ``(lines before, lines, count)`` per batch of
    ``size`` lines (the last may hold fewer), the lines joined by newlines as
    :func:`decode_lines` reads them (a line too long to keep already cut to its first
    bytes). Only the ends of lines are looked for here."""
    import numpy as np  # lazy: start-up (numpy)

    pieces: list[bytes] = []  # the lines of the batch being filled
    filled = first = 0
    with reading(source) as (fh, _):
        for before, lines, count in raw_blocks(fh, max_chars):
            if not filled:
                first = before
            used = pos = 0  # lines of this block in a batch already; where the next one starts
            ends = None
            while filled + count - used >= size:
                if ends is None:
                    ends = np.flatnonzero(np.frombuffer(lines, np.uint8) == 10)
                upto = used + size - filled  # lines [used, upto) of the block end the batch
                end = int(ends[upto - 1]) if upto < count else len(lines)
                pieces.append(lines[pos:end])
                yield first, b"\n".join(pieces), size
                pieces, filled, used, pos, first = [], 0, upto, end + 1, before + upto
            if used < count:
                pieces.append(lines[pos:] if pos else lines)
                filled += count - used
    if filled:
        yield first, b"\n".join(pieces), filled


def seekable(fh: BinaryIO) -> bool:
    """Whether ``fh`` is a regular file (its bytes can be read at an offset: :func:`range_lines`)."""
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def byte_ranges(start: int, end: int, step: int) -> Iterator[tuple[int, int]]:
    """``(a, b)``: ``[start, end)`` in ranges of ``step`` bytes, for :func:`range_lines`."""
    for a in range(start, end, step):
        yield a, min(a + step, end)


def range_lines(fd: int, a: int, b: int, start: int, name: str, max_chars: int = 0) -> tuple[bytes, int]:
    """``(lines, count)``: the lines of the regular file ``fd`` whose first byte is in
    ``[a, b)``, joined by newlines as :func:`decode_lines` reads them, and how many there are.

    Lines start at ``start`` (where the input begins: standard input may have been read
    before) and after every newline. The last line is read on past ``b`` to its end, or to
    its first ``4 * (max_chars + 1)`` bytes when it is longer (the length at which it is
    cut). The ranges of :func:`byte_ranges` hand every line to exactly one range, so that
    ``predict --workers`` reads a regular file in its workers, each its own ranges, and the
    parent reads nothing. A read error, or a file cut short while it is read, is one line
    naming ``name`` (:class:`UserError`)."""
    try:
        return _range_lines(fd, a, b, start, _limit(max_chars))
    except OSError as exc:
        raise UserError(f"{name}: cannot read ({exc.strerror or exc})") from None
    except EOFError:
        raise UserError(f"{name}: the file changed while it was read (it is shorter than at its start)") from None


def _range_lines(fd: int, a: int, b: int, start: int, limit: int) -> tuple[bytes, int]:
    at = a - 1 if a > start else a  # one byte before: does a line start at a?
    data = _pread(fd, b - at, at)
    pos = 0
    if at < a:
        if data[:1] != b"\n":  # a's line started in an earlier range: it is that range's
            pos = data.find(b"\n", 1)
            if pos < 0:
                return b"", 0
        pos += 1
    if pos >= len(data):
        return b"", 0
    body = data[pos:] if pos else data
    if not body.endswith(b"\n"):  # the last line goes on past b: read it to its end (or its cut)
        parts = [body]
        line = len(body) - body.rfind(b"\n") - 1  # bytes of the last line so far
        at = b
        while not limit or line < limit:
            more = os.pread(fd, BLOCK, at)
            if not more:
                break
            end = more.find(b"\n")
            if end >= 0:
                parts.append(more[: end + 1])
                break
            parts.append(more)
            line, at = line + len(more), at + len(more)
        body = b"".join(parts)
    count = body.count(b"\n")
    if body.endswith(b"\n"):
        return body[:-1], count
    return body, count + 1


def _pread(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise EOFError(offset + len(data))
    return data

"""Reading ``predict``'s input: one text per line, in bounded memory, whatever the input.

The input (a file or standard input) is read in blocks, a block being what one read
returns (at most :data:`BLOCK` bytes, 64 KiB; a pipe's lines are scored as they come). The whole
lines of a block are split and decoded at once (:func:`decode_lines`), one at a time only
in a block holding a line to cut or bytes that are not UTF-8. With ``max_chars``, a line of
``4 * (max_chars + 1)`` bytes or more keeps only its first ``max_chars + 1`` characters (the
model cuts it to ``max_chars`` and counts it as cut) and the rest of it is skipped as it is
read: memory stays bounded, a line of gigabytes or /dev/zero alike. A line's ending (``\\n``
or ``\\r\\n``) is not part of its text; a line that is not UTF-8 is named ``FILE:LINE``.

Two readers: :func:`line_batches`, lists of texts (one process), and :func:`byte_batches`,
batches of undecoded lines that ``predict --workers`` sends to its workers as they are, each
worker decoding its own (:func:`decode_lines`): the reading process only finds where lines end.
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


def raw_blocks(fh: BinaryIO, max_chars: int, offset: int = 0) -> Iterator[tuple[int, bytes, int, int]]:
    """``(lines before, lines, count, where)`` per block read: ``count`` whole lines joined by
    newlines (without the last one's), a line too long to keep cut to its first
    ``4 * (max_chars + 1)`` bytes (a block of its own; the rest of it is skipped); ``where``
    is the offset of their first byte in the file, ``offset`` being that of the first byte read."""
    limit = _limit(max_chars)
    read = getattr(fh, "read1", None) or fh.read  # what is there: a pipe's lines are scored as they come
    number = 0  # lines before the block
    pending = b""  # the start of a line whose end is not read yet
    where = offset  # the offset of pending's first byte (of the next byte read when there is none)
    skipping = False  # in the rest of a line that was cut
    while True:
        data = read(BLOCK)
        if not data:
            break
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                where += len(data)
                continue
            data, skipping, where = data[end + 1 :], False, where + end + 1
        data = pending + data if pending else data
        end = data.rfind(b"\n")
        if end >= 0:
            head, pending = data[:end], data[end + 1 :]
            count = head.count(b"\n") + 1
            yield number, head, count, where
            number += count
            where += end + 1
        else:
            pending = data
        if limit and len(pending) >= limit:  # a line too long to keep: its start, then skip the rest
            yield number, pending[:limit], 1, where
            number += 1
            where += len(pending)
            pending, skipping = b"", True
    if pending:
        yield number, pending, 1, where


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
    doc). A line that is not UTF-8 raises :class:`UserError` naming it, after the batches
    before it."""
    batch: list[str] = []
    with reading(source) as (fh, name):
        for before, lines, _, _ in raw_blocks(fh, max_chars):
            texts, error = decode_lines(lines, before, name, max_chars)
            batch += texts
            if len(batch) >= size:
                whole = len(batch) - len(batch) % size
                for start in range(0, whole, size):
                    yield batch[start : start + size]
                del batch[:whole]
            if error is not None:
                raise error
    if batch:
        yield batch


Span = tuple[int, int]  # (offset, length) of bytes in a file


def byte_batches(
    source: str | tuple[BinaryIO, str], size: int, max_chars: int = 0, spans: bool = False
) -> Iterator[tuple[int, bytes | tuple[Span, ...], int]]:
    """:func:`line_batches` undecoded: ``(lines before, lines, count)`` per batch of
    ``size`` lines (the last may hold fewer), the lines joined by newlines as
    :func:`decode_lines` reads them (a line too long to keep already cut to its first
    bytes). Only the ends of lines are looked for here.

    With ``spans`` (``source`` an open regular file, :func:`seekable`), a batch holds where its
    lines are in the file instead of their bytes: ``(offset, length)`` pairs, one per run of
    whole lines (more only around a line that was cut), which :func:`read_spans` reads back
    as the bytes. ``predict --workers`` then sends its workers a few numbers per batch, and
    each worker reads its own lines."""
    import numpy as np  # lazy: start-up (numpy)

    pieces: list[bytes] = []  # the lines of the batch being filled
    runs: list[Span] = []  # the same, as spans of the file
    filled = first = 0

    def add(block: bytes, where: int, start: int, end: int) -> None:
        if not spans:
            pieces.append(block[start:end] if start or end < len(block) else block)
        elif runs and sum(runs[-1]) + 1 == where + start:  # the next line of the run: one span
            runs[-1] = (runs[-1][0], runs[-1][1] + 1 + end - start)
        else:
            runs.append((where + start, end - start))

    def batch() -> bytes | tuple[Span, ...]:
        return tuple(runs) if spans else b"\n".join(pieces)

    with reading(source) as (fh, _):
        for before, lines, count, where in raw_blocks(fh, max_chars, fh.tell() if spans else 0):
            if not filled:
                first = before
            used = pos = 0  # lines of this block in a batch already; where the next one starts
            ends = None
            while filled + count - used >= size:
                if ends is None:
                    ends = np.flatnonzero(np.frombuffer(lines, np.uint8) == 10)
                upto = used + size - filled  # lines [used, upto) of the block end the batch
                end = int(ends[upto - 1]) if upto < count else len(lines)
                add(lines, where, pos, end)
                yield first, batch(), size
                pieces, runs, filled, used, pos, first = [], [], 0, upto, end + 1, before + upto
            if used < count:
                add(lines, where, pos, len(lines))
                filled += count - used
    if filled:
        yield first, batch(), filled


def seekable(fh: BinaryIO) -> bool:
    """Whether ``fh`` is a regular file (its bytes can be read again at an offset: :func:`read_spans`)."""
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def read_spans(fd: int, spans: tuple[Span, ...], name: str) -> bytes:
    """The bytes of ``spans`` (:func:`byte_batches`) read from the file ``fd``, joined by
    newlines; one line naming ``name`` if the file is shorter now than when they were found."""
    parts = []
    for offset, length in spans:
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise UserError(f"{name}: cannot read ({exc.strerror or exc})") from None
        if len(data) != length:
            raise UserError(f"{name}: the file changed while it was read (it is shorter than at its start)")
        parts.append(data)
    return parts[0] if len(parts) == 1 else b"\n".join(parts)

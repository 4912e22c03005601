"""predict's input reader (``sparse_rational.lines``): lines read in blocks give the same
texts, in the same batches, as reading them one at a time (and so do the undecoded batches
that ``predict --workers`` sends its workers, once decoded), wherever a block ends: across a line,
a ``\\r\\n``, a character of several bytes, a line cut for being too long, a line that is
not UTF-8."""

from __future__ import annotations

import codecs
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_rational import lines as reader
from sparse_rational.errors import UserError


def one_at_a_time(data: bytes, size: int, max_chars: int):
    """The reference: every line decoded on its own; a line of ``4 * (max_chars + 1)`` bytes
    or more keeps its first ``max_chars + 1`` characters. Returns ``(batches, error)``."""
    limit = 4 * (max_chars + 1) if max_chars > 0 else 0
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    batches, batch = [], []
    for number, raw in enumerate(lines, 1):
        cut = 0 < limit <= len(raw)
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(raw[:limit] if cut else raw, final=not cut)
        except UnicodeDecodeError:  # every line before it is read
            return batches + ([batch] if batch else []), f"in.txt:{number}: not UTF-8 text"
        batch.append((text[: max_chars + 1] if cut else text).removesuffix("\r"))
        if len(batch) == size:
            batches.append(batch)
            batch = []
    return batches + ([batch] if batch else []), None


def in_blocks(path, size: int, max_chars: int):
    batches = []
    try:
        for batch in reader.line_batches(str(path), size, max_chars):
            batches.append(batch)
    except UserError as exc:
        return batches, str(exc).replace(str(path), "in.txt")
    return batches, None


def in_byte_blocks(path, size: int, max_chars: int):
    """``byte_batches``, each batch decoded as a worker decodes it; the line counts checked."""
    batches = []
    for before, data, count in reader.byte_batches(str(path), size, max_chars):
        texts, error = reader.decode_lines(data, before, str(path), max_chars)
        if error is not None:  # the lines of the batch before it are scored and written too
            return batches + ([texts] if texts else []), str(error).replace(str(path), "in.txt")
        assert len(texts) == count and before == size * len(batches)
        batches.append(texts)
    return batches, None


def in_ranges(path, step: int, max_chars: int, skip: int = 0):
    """``range_lines`` over ``byte_ranges`` of ``step`` bytes, as the workers of ``predict
    --workers`` read a regular file, the input starting ``skip`` bytes in (standard input
    handed over part-read); each range decoded as a worker decodes it. Returns all the
    texts in order, and the error of the first line that is not UTF-8 (None if none)."""
    texts: list[str] = []
    with open(path, "rb") as fh:
        fd, end = fh.fileno(), os.fstat(fh.fileno()).st_size
        for a, b in reader.byte_ranges(skip, end, step):
            lines, count = reader.range_lines(fd, a, b, skip, "in.txt", max_chars)
            if not count:
                assert lines == b""
                continue
            got, error = reader.decode_lines(lines, len(texts), "in.txt", max_chars)
            if error is not None:  # the lines before it (predict writes none of its range's)
                return texts + got, str(error)
            assert len(got) == count
            texts += got
    return texts, None


PIECES = [b"good", b" ", b"not bad", b"\n", b"\r\n", b"\r", "caf\u00e9".encode(), "\u2019".encode(), b"\xff", b"x" * 30]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=40),
    block=st.integers(1, 64),
    size=st.integers(1, 5),
    max_chars=st.sampled_from([0, 1, 3, 8]),
)
def test_blocks_read_like_lines(tmp_path_factory, monkeypatch_session, pieces, block, size, max_chars):
    data = b"".join(pieces)
    path = tmp_path_factory.mktemp("r") / "in.txt"
    path.write_bytes(data)
    monkeypatch_session.setattr(reader, "BLOCK", block)
    expected = one_at_a_time(data, size, max_chars)
    assert in_blocks(path, size, max_chars) == expected
    assert in_byte_blocks(path, size, max_chars) == expected


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=40),
    skip=st.integers(0, 40),
    step=st.integers(1, 48),
    block=st.integers(1, 64),
    max_chars=st.sampled_from([0, 1, 3, 8]),
)
def test_ranges_hand_every_line_to_one_worker(
    tmp_path_factory, monkeypatch_session, pieces, skip, step, block, max_chars
):
    """The lines that start in each range, read on past its end to the end of the last one
    (or to its cut), are the lines of the file in order, each once: a range may start or end
    anywhere (inside a line, a ``\\r\\n``, a character of several bytes, a line to cut), hold
    no line start at all, or start after bytes read by someone else."""
    data = b"".join(pieces)
    skip = min(skip, len(data))
    path = tmp_path_factory.mktemp("r") / "in.txt"
    path.write_bytes(data)
    monkeypatch_session.setattr(reader, "BLOCK", block)  # reading on past a range: in blocks
    batches, error = one_at_a_time(data[skip:], 1, max_chars)
    assert in_ranges(path, step, max_chars, skip) == ([b[0] for b in batches], error)


def test_a_file_cut_short_while_read_is_one_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"good\nbad\n" * 100)
    with open(path, "rb") as fh:
        assert reader.range_lines(fh.fileno(), 495, 900, 0, "in.txt")[0].startswith(b"good\nbad")
        os.truncate(path, 600)
        with pytest.raises(UserError, match=r"^in\.txt: the file changed while it was read") as err:
            reader.range_lines(fh.fileno(), 495, 900, 0, "in.txt")
    assert "\n" not in str(err.value)


def test_only_regular_files_are_read_by_offset(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"x\n")
    with open(path, "rb") as fh:
        assert reader.seekable(fh)
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"):
        assert not reader.seekable(pipe)


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_long_line_among_others_is_cut_and_the_rest_is_read(tmp_path, monkeypatch):
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\n" + b"ab" * 5000 + b"\nlast\r\n")
    monkeypatch.setattr(reader, "BLOCK", 4096)
    assert list(reader.line_batches(str(path), 10, 10)) == [["first", "ab" * 5 + "a", "last"]]


def test_a_line_that_is_not_utf8_is_named_after_every_line_before_it(tmp_path, monkeypatch):
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(b"line %d\n" % k for k in range(1, 8)) + b"bad \xff\nafter\n")
    monkeypatch.setattr(reader, "BLOCK", 16)
    got = []
    with pytest.raises(UserError, match=r"in\.txt:8: not UTF-8 text$"):
        for batch in reader.line_batches(str(path), 3, 0):
            got.append(batch)
    assert got == [["line 1", "line 2", "line 3"], ["line 4", "line 5", "line 6"], ["line 7"]]

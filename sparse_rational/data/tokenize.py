"""A small PTB-like tokenizer matching the conventions of the GloVe 6B vocabulary.

GloVe 6B was trained on Stanford-tokenized, lower-cased text, so the tokens it knows look
like: do n't, it 's, u.s., mr., 1,000, well-known, ..., --, and the PTB quotes `` and ''.
This tokenizer produces the same shapes from raw text (the Blitzer et al. Amazon reviews)
and leaves text that is already tokenized that way (FDU-MTL) unchanged; it is idempotent:
``tokenize(" ".join(tokenize(x))) == tokenize(x)``.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, repeat
from typing import Any

import numpy as np

__all__ = ["CHARS_PER_TOKEN", "BatchTokenizer", "tokenize", "tokenize_batch"]

# Before a text is tokenized for a model, it is cut to max_tokens x this many characters (the
# featurizers, the folded table and the page's scorer all cut it so), bounding the memory of reading it.
CHARS_PER_TOKEN = 64

# Abbreviations that keep their period (as in the Stanford tokenizer and the GloVe vocabulary).
_ABBREVIATIONS = "mr|mrs|ms|dr|jr|sr|st|vs|etc|inc|ltd|co|corp|mt|prof|gen|jan|feb|aug|sept?|oct|nov|dec"

# Order matters: the first alternative that matches at a position wins. ``[^\W_]`` is a
# letter or digit (any script), ``[^\W\d_]`` a letter; ``(?![^\W_])`` = "at a word end".
# The guards ``(?=[^\W_]++X)`` (a whole run of letters and digits, then X) are implied by
# the alternative they precede and only make it fail at once on a plain word, instead of
# backtracking through it (findall a fifth faster on review text; the same tokens on
# 411,017 distinct chunks of the shared corpora, every code point and random punctuation).
_TOKEN_RE = re.compile(
    r"""
      https?://[^\s<>"']+                          # URLs
    | (?=[^\W_]++\.)(?:[^\W_]+\.)+(?:com|org|net|edu|gov)(?![^\W_])  # amazon.com
    | (?:[^\W\d_]\.)+[^\W\d_](?![^\W_])\.?          # u.s.  e.g.  i.e  p.s.
    | (?=[^\W_]++\.)(?:"""
    + _ABBREVIATIONS
    + r""")\.(?![^\W_])                             # mr.  etc.  dec.
    | (?=[^\W_]++')[^\W_]+(?=n't(?![^\W_]))        # "do" of "don't", "ca" of "can't"
    | n't(?![^\W_])                                 # the negation clitic
    | '(?:s|re|ve|ll|d|m|em|n|\d0s)(?![^\W_])        # 's 're 've 'll 'd 'm 'em 'n '90s
    | \d+(?:[.,:/]\d+)+                              # 1,000  3.5  10:30  1/2
    | (?=[^\W_]++/)[^\W_]+(?:/[^\W_]+)+(?![^\W_])   # and/or  b/c  w/o
    | [^\W_]+(?:(?:-|'(?!(?:s|re|ve|ll|d|m)(?![^\W_])))[^\W_]+)*
                                                    # words, with internal hyphens and
                                                    # apostrophes (o'clock) but not clitics
    | \.{2,} | -{2,} | [!?]{2,} | \*{2,}              # ...  --  !!  ***
    | `` | ''                                       # PTB quotes
    | \S                                            # any other single character
    """,
    re.VERBOSE,
)

# Typographic quotes and apostrophes -> the ASCII ones GloVe saw.
_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "--",
        "\u2026": "...",
        "\u00a0": " ",
        "\ufffd": " ",  # decoding debris in the Blitzer release (and in FDU-MTL dvd)
        **{chr(c): " " for c in range(0x20) if chr(c) not in "\t\n\r"},  # e.g. \x1a
    }
)


def tokenize(text: str) -> list[str]:
    """Lower-case, unescape HTML entities (``&amp;`` -> ``&``) and split into PTB-like tokens.

    Words, numbers and punctuation become separate tokens; clitics are split off
    (``"don't"`` -> ``["do", "n't"]``, ``"it's"`` -> ``["it", "'s"]``). Text that is already
    tokenized this way (space separated, as in FDU-MTL) comes back as ``text.split()``.
    """
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = text.lower().translate(_TRANSLATE)
    # No token spans whitespace, so the regex can run chunk by chunk; a chunk of letters
    # and digits only is always one token (the common case, and much faster than findall).
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            tokens.append(chunk)
        else:
            tokens.extend(_TOKEN_RE.findall(chunk))
    return tokens


# --- many texts at once ------------------------------------------------------------------
# BatchTokenizer joins the texts of a batch into one string, with the chunk _DOC between
# them, and runs every step of tokenize() once on that string: unescaping, normalising,
# lower-casing and translating work character by character, and none of them crosses the
# spaces around _DOC (an entity name holds no space; spaces are NFC starters; final sigma
# looks no further than a space). It then splits the string into chunks (``str.split``)
# and looks each chunk up in a memo of the chunks seen before: no token spans whitespace,
# so a chunk's tokens do not depend on what surrounds it. Only chunks not seen before go
# through the regex, once each; the rest is numpy on integer codes. _DOC is a control
# character, which tokenize() turns into a space: a text that holds it gets a space instead.
_DOC = "\x00"
_REPLACE = [(chr(c), r) for c, r in _TRANSLATE.items() if chr(c) != _DOC]  # no r holds a key


def _joined(texts: Sequence[str]) -> str:
    """``texts`` joined by `` _DOC ``, HTML entities unescaped (an entity may stand for a space)."""
    joined = f" {_DOC} ".join(texts)
    if joined.count(_DOC) != len(texts) - 1:  # rare: a text holds the separator
        joined = f" {_DOC} ".join(t.replace(_DOC, " ") for t in texts)
    if "&" in joined:
        joined = html.unescape(joined)
    return joined


def _normalized(texts: Sequence[str]) -> str:
    """``texts`` after the normalisation of :func:`tokenize`, joined by `` _DOC ``."""
    joined = _joined(texts)
    if not joined.isascii():
        joined = unicodedata.normalize("NFC", joined)
    joined = joined.lower()
    for old, new in _REPLACE:  # str.translate, but much faster on a long non-ASCII string
        if old in joined:
            joined = joined.replace(old, new)
    return joined


def _normalized_chunk(chunk: str) -> str:
    """One chunk of :func:`_joined`'s text (no whitespace, nor a character that the
    translation turns into a space) normalised as :func:`_normalized` would: none of its
    steps looks across whitespace (spaces are NFC starters; final sigma looks no further)."""
    if chunk.isascii():
        return chunk.lower()
    return unicodedata.normalize("NFC", chunk).lower().translate(_TRANSLATE)


def _normalized_chunks(texts: Sequence[str]) -> list[str]:
    """The whitespace-separated chunks of ``texts`` after the normalisation of
    :func:`tokenize`, a ``_DOC`` chunk between two texts."""
    return _normalized(texts).split()


def chunk_tokens(chunk: str) -> list[str]:
    """The tokens of one normalised chunk (text without whitespace), as :func:`tokenize`
    splits it."""
    return [chunk] if chunk.isalnum() else _TOKEN_RE.findall(chunk)


class _Growing:
    """An int64 array that grows at its end (its capacity doubles): ``array`` is a view of
    what it holds, without copying it again after every batch that learned a chunk."""

    def __init__(self) -> None:
        self._data = np.empty(1024, np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: np.ndarray) -> None:
        end = self._n + len(values)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)), np.int64)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : end] = values
        self._n = end

    @property
    def array(self) -> np.ndarray:
        return self._data[: self._n]


# When the vocabulary is copied into C (sr_learn): once the new chunks learned in Python
# (this batch's included) reach this many, or a quarter of the vocabulary's words if more.
# 10,180 words cost 1.5-2.2 ms to copy (~0.17 us a word), and a new chunk learned in C saves
# ~0.75 us (0.139 s over the 185,000 of 23,094 distinct reviews): the copy is made once
# Python has spent about what it costs (as a skier rents until rent would have bought the
# skis), so a one-line `predict` does not pay for it, nor a short run with a large vocabulary.
_C_VOCABULARY_FROM = 4096


def _chunks_of(buf: bytes, starts: np.ndarray, sizes: np.ndarray) -> list[str]:
    """The chunks ``buf[starts[j] : starts[j] + sizes[j]]`` of a batch's joined text, decoded
    at once (no chunk holds a control character) and normalised (``bytes.lower()``
    lower-cased the ASCII ones already)."""
    pieces = map(slice, starts.tolist(), (starts + sizes).tolist())
    text = b"\x01".join(map(buf.__getitem__, pieces)).decode("utf-8", "surrogatepass")
    chunks = text.split("\x01")
    return chunks if text.isascii() else [c if c.isascii() else _normalized_chunk(c) for c in chunks]


def _within(sizes: np.ndarray) -> np.ndarray:
    """``[0, 1, .., sizes[0] - 1, 0, 1, .., sizes[1] - 1, ...]``: places within each run."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


class BatchTokenizer:
    """:func:`tokenize` for many texts at once, several times faster, with each token
    mapped to an integer id by ``lookup``: a function, or a mapping with ``default`` the
    id of the tokens it lacks (default: ids of :attr:`tokens`, the distinct tokens in the
    order they were first met).

    Each distinct chunk (text between whitespace) is split and looked up once and
    remembered as its ids; the memo starts again when it would hold more than
    ``max_chunks`` chunks, so memory stays bounded however many texts are read.

    With ``native`` (default: when the compiled kernels of :mod:`sparse_rational.native`
    can be built), splitting the normalised text into chunks and looking them up in the
    memo runs in C over its UTF-8 bytes, and only the chunks not seen before come back to
    Python; the ids are the same either way."""

    def __init__(
        self,
        lookup: Callable[[str], int] | Mapping[str, int] | None = None,
        max_chunks: int = 1 << 18,
        native: bool | None = None,
        default: int | None = None,
    ):
        self.tokens: list[str] = []
        self._index: dict[str, int] = {}
        self._default = None
        # a plain dict vocabulary: new ASCII chunks are split and looked up in C (sr_learn)
        self._vocabulary = lookup if type(lookup) is dict else None
        self._vocab_memo: Any = None  # sparse_rational.native.ChunkMemo of _vocabulary, made when first needed
        self._learned_in_python = 0  # new chunks learned in Python while _vocab_memo was not made
        if isinstance(lookup, Mapping):
            if default is None:
                raise ValueError("a vocabulary lookup needs the default id of the tokens it lacks")
            self._lookup: Callable = lookup.get
            self._default = int(default)
        else:
            self._lookup = lookup or self._own_id
        self.max_chunks = max_chunks
        self._lock = threading.Lock()
        self._native: Any = None  # sparse_rational.native.ChunkMemo: the memo, in C
        if native or native is None:
            self._native = self._c_memo(required=bool(native))
        self._reset()

    @staticmethod
    def _c_memo(required: bool) -> Any:
        """A new C memo, or None when the compiled kernels cannot be built (``required``: raise)."""
        from .. import native as compiled  # lazy: start-up (subprocess, tempfile)

        lib = compiled.library()
        if lib is None and required:
            raise RuntimeError(f"the compiled tokenizer is unavailable ({compiled.build_error() or 'turned off'})")
        return compiled.ChunkMemo(lib) if lib is not None else None

    def __getstate__(self) -> dict:
        """Copies and pickles hold no C memo (nor the memo of chunks): they start it again."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_native", "_memo", "_lock", "_vocab_memo")}
        state["_native"] = self._native is not None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._native = self._c_memo(required=False) if self._native else None
        self._vocab_memo = None
        self._reset()

    def _own_id(self, token: str) -> int:
        i = self._index.get(token)
        if i is None:
            i = self._index[token] = len(self.tokens)
            self.tokens.append(token)
        return i

    def _reset(self) -> None:
        self._memo: dict[str, int] = {_DOC: 0}  # chunk -> code; code 0: the end of a text (Python path)
        if self._native is not None:
            self._native.clear()
            self._native.put(_DOC.encode(), 0)
        self._starts = _Growing()  # code -> where its ids start in _flat
        self._sizes = _Growing()  # code -> how many tokens it has (none: no chunk is empty)
        self._starts.extend(np.zeros(1, np.int64))  # code 0: the end of a text, no token
        self._sizes.extend(np.zeros(1, np.int64))
        self._flat = _Growing()

    def _size(self) -> int:
        return len(self._native) if self._native is not None else len(self._memo)

    def _learn(self, chunks: list[str]) -> None:
        """Split and look up new ``chunks`` and give them the next codes, in order (in the
        Python memo too, unless the C memo is used: it has added them itself)."""
        if not chunks:
            return
        first = len(self._sizes)
        if self._native is None:
            self._memo.update(zip(chunks, range(first, first + len(chunks))))
        self._store(*self._split(chunks))

    def _split(self, chunks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(sizes, ids)``: how many tokens each chunk has, and their ids, chunk after chunk.
        The chunks that are not a single word go through the regular expression together,
        joined by ``_DOC`` (a token of its own, as no token spans whitespace)."""
        n = len(chunks)
        simple = np.fromiter(map(str.isalnum, chunks), bool, n)  # one token: the chunk itself
        sizes = np.ones(n, np.int64)
        hard = list(compress(chunks, ~simple))
        found: list[str] = self._find(f" {_DOC} ".join(hard)) if hard else []
        marks = np.flatnonzero(np.fromiter(map(_DOC.__eq__, found), bool, len(found)))
        sizes[~simple] = np.diff(np.concatenate([[-1], marks, [len(found)]])) - 1
        starts = np.cumsum(sizes) - sizes
        tokens = np.empty(int(sizes.sum()), object)  # every chunk's tokens, chunk after chunk
        tokens[starts[simple]] = list(compress(chunks, simple))
        if hard:
            hard_sizes = sizes[~simple]
            tokens[np.repeat(starts[~simple], hard_sizes) + _within(hard_sizes)] = np.delete(
                np.asarray(found, object), marks
            )
        words = tokens.tolist()
        if self._default is not None:  # a vocabulary (dict): its ids, the default for the rest
            ids = np.fromiter(map(self._lookup, words, repeat(self._default)), np.int64, len(words))
        else:
            ids = np.fromiter(map(self._lookup, words), np.int64, len(words))
        return sizes, ids

    def _store(self, sizes: np.ndarray, ids: np.ndarray) -> None:
        """The next codes: chunks of ``sizes`` tokens, whose ids are ``ids`` one chunk after another."""
        self._starts.extend(np.cumsum(sizes) - sizes + len(self._flat))
        self._sizes.extend(sizes)
        self._flat.extend(ids)

    def _learn_in_c(self, buf: bytes, starts: np.ndarray, sizes: np.ndarray) -> bool:
        """:meth:`_learn` of the new chunks ``buf[starts[j] : starts[j] + sizes[j]]`` with the
        vocabulary in C (``sr_learn``; the chunks that are not ASCII in Python); False (and
        nothing learned) when there is no vocabulary to use, or too few chunks to be worth
        putting it in C (:data:`_C_VOCABULARY_FROM`)."""
        if self._vocabulary is None or self._default is None:
            return False
        if self._vocab_memo is None:
            self._learned_in_python += len(starts)
            if self._learned_in_python < max(_C_VOCABULARY_FROM, len(self._vocabulary) // 4):
                return False
            from .. import native as compiled  # lazy: start-up (subprocess, tempfile)

            lib = compiled.library()
            if lib is None:  # pragma: no cover - the chunk memo is in C, so the library is loaded
                return False
            memo = compiled.ChunkMemo(lib)
            try:
                memo.put_many(list(self._vocabulary), list(self._vocabulary.values()))
            except (ValueError, TypeError, AttributeError, OverflowError):  # not str -> id >= 0: Python looks it up
                self._vocabulary = None
                return False
            self._vocab_memo = memo
        counts, ids = self._vocab_memo.learn(buf, starts, sizes, self._default)
        left = np.flatnonzero(counts < 0)
        if len(left):  # chunks that are not ASCII: normalised and split here, then put in their places
            py_sizes, py_ids = self._split(_chunks_of(buf, starts[left], sizes[left]))
            counts[left] = py_sizes
            begin = np.cumsum(counts) - counts
            merged = np.empty(int(counts.sum()), np.int64)
            in_c = counts >= 0
            in_c[left] = False
            merged[np.repeat(begin[in_c], counts[in_c]) + _within(counts[in_c])] = ids
            merged[np.repeat(begin[left], py_sizes) + _within(py_sizes)] = py_ids
            ids = merged
        self._store(counts, ids)
        return True

    def _find(self, text: str) -> list[str]:
        """``_TOKEN_RE.findall(text)``: in C when the compiled kernels are used and the text
        is ASCII (:func:`sparse_rational.native.tokens`, 8x faster on the corpora's chunks)."""
        if self._native is not None:
            from .. import native as compiled  # lazy: start-up (subprocess, tempfile)

            lib = compiled.library()
            found = compiled.tokens(lib, text) if lib is not None else None
            if found is not None:
                return found
        return _TOKEN_RE.findall(text)

    def _codes(self, chunks: list[str]) -> np.ndarray:
        codes = np.fromiter(map(self._memo.get, chunks, repeat(-1)), np.int64, len(chunks))
        missing = codes < 0
        if missing.any():
            new = list(dict.fromkeys(compress(chunks, missing)))
            if len(self._memo) + len(new) > self.max_chunks:  # bounded memory: start again
                self._reset()
                missing = np.fromiter(map(_DOC.__ne__, chunks), bool, len(chunks))
                new = list(dict.fromkeys(compress(chunks, missing)))
            self._learn(new)
            codes[missing] = np.fromiter(map(self._memo.__getitem__, compress(chunks, missing)), np.int64)
        return codes

    def _native_codes(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`_codes` of :func:`_normalized_chunks`, computed in C: the joined text, its
        ASCII letters lower-cased, is split where the normalised text has whitespace and
        every chunk is looked up in the C memo, which adds the new ones with the next codes;
        they are tokenised once each, in that order: in C with the vocabulary
        (:meth:`_learn_in_c`), or normalised and tokenised here."""
        buf = _joined(texts).encode("utf-8", "surrogatepass").lower()  # bytes.lower: ASCII only
        held = self._size()
        try:
            codes, starts, sizes = self._native.chunks(buf, len(self._sizes))
            if len(starts) and self._size() > self.max_chunks and held > 1:  # bounded memory: start again
                self._reset()
                codes, starts, sizes = self._native.chunks(buf, len(self._sizes))
            if len(starts) and not self._learn_in_c(buf, starts, sizes):
                self._learn(_chunks_of(buf, starts, sizes))
        except BaseException:  # the C memo may hold chunks not learned here (Ctrl-C, memory): forget all
            self._reset()
            raise
        return codes

    def ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)``: the token ids (int64) of all ``texts`` one after another,
        ``lengths[i]`` of them from text ``i``."""
        if not texts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        with self._lock:  # one batch at a time: the C memo must not change under a reader
            if self._native is not None:
                codes = self._native_codes(texts)
            else:
                codes = self._codes(_normalized_chunks(texts))
            starts, sizes, flat = self._starts.array, self._sizes.array, self._flat.array
        size = sizes[codes]
        ends = np.cumsum(size)
        total = int(ends[-1]) if len(ends) else 0
        # token k of chunk j sits at flat[starts[code_j] + k]
        ids = flat[np.repeat(starts[codes] - (ends - size), size) + np.arange(total)]
        text_ends = ends[codes == 0]  # tokens before each _DOC chunk
        lengths = np.diff(np.concatenate([[0], text_ends, [total]]))
        return ids, lengths


def tokenize_batch(texts: Sequence[str], tokenizer: BatchTokenizer | None = None) -> list[list[str]]:
    """``[tokenize(t) for t in texts]``, computed for all texts at once (see
    :class:`BatchTokenizer`; pass one made without ``lookup`` to keep its memo between calls)."""
    tokenizer = tokenizer or BatchTokenizer()
    ids, lengths = tokenizer.ids(texts)
    words = np.asarray(tokenizer.tokens[:], dtype=object)[ids].tolist() if len(ids) else []  # [:]: a snapshot
    ends = np.cumsum(lengths).tolist()
    return [words[a:b] for a, b in zip([0, *ends[:-1]], ends)]

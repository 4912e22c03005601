"""The compiled prediction kernels (sparse_rational/native): the same bits as the numpy
recurrence, the same tokens as the Python tokenizer for every character, and a clean
fallback when nothing can be compiled."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_rational import native
from sparse_rational.data.tokenize import (
    _DOC,
    _TOKEN_RE,
    _TRANSLATE,
    BatchTokenizer,
    _normalized_chunks,
    tokenize_batch,
)
from sparse_rational.folded import FoldedModel

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not native.available(), reason=f"no C compiler here ({native.build_error()})")


def _model(structure, readout, vocab=50, e=8, seed=0) -> FoldedModel:
    rng = np.random.default_rng(seed)
    n = sum(structure)
    return FoldedModel.fold(
        rng.normal(size=(vocab, e)),
        rng.normal(size=(e, n)) * 2,
        rng.normal(size=(e, n)),
        rng.uniform(-1, 3, size=n),
        structure,
        rng.normal(size=(3, len(structure))),
        rng.normal(size=3),
        readout,
    )


@pytest.mark.parametrize("readout", ["final", "mean", "max"])
@pytest.mark.parametrize("structure", [(4, 4, 4), (3, 2, 1, 1), (1,), (5,), (2, 6, 1)])
def test_the_c_recurrence_gives_the_numpy_bits(structure, readout):
    model = _model(structure, readout)
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 60, size=40)
    lengths[[0, 5]] = 0, 1  # an empty document, a one-token one
    ids = rng.integers(0, 50, size=int(lengths.sum()))
    compiled = model.states(ids, lengths)
    model.compiled = False
    reference = model.states(ids, lengths)
    assert compiled.dtype == reference.dtype == np.float32
    np.testing.assert_array_equal(compiled, reference)  # bit for bit, not within a tolerance
    assert not compiled[0].any()


def test_the_c_recurrence_refuses_ids_outside_the_table():
    model = _model((2, 1), "max")
    with pytest.raises(ValueError, match="outside the table of 50 rows"):
        model.states(np.array([3, 50]), np.array([2]))
    with pytest.raises(ValueError, match="3 token ids for document lengths summing to 2"):
        native.states(native.library(), np.array([1, 2, 3]), np.array([2]), model._fu, model._first, "max")


def _characters() -> list[str]:
    """Every code point that some step could treat unlike a letter: whitespace, controls,
    formats, marks, separators, surrogates, all up to U+3400 (assigned or not), those NFC
    or lower-casing change, and those of the translation table; every 97th of the rest
    (the whole range takes a minute; it passed when this test was written)."""
    chosen = []
    for code in range(0x110000):
        c = chr(code)
        risky = (
            code < 0x3400
            or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Mc", "Me")
            or c.isspace()
            or unicodedata.normalize("NFC", c) != c
            or c.lower() != c
            or c in _TRANSLATE
        )
        if risky or code % 97 == 0:
            chosen.append(c)
    return chosen


def _every_character() -> list[str]:
    """Texts that put each character between letters, alone, and before a capital sigma
    (final-sigma lower-casing looks at its neighbours)."""
    return [f"Ab{c}Cd {c} x{c}\u03a3 {c}\u03a3." for c in _characters()]


def test_the_c_splitter_keeps_the_tokens_of_every_character():
    texts = _every_character()
    assert len(texts) > 25_000
    for k in range(0, len(texts), 20_000):
        batch = texts[k : k + 20_000]
        assert tokenize_batch(batch, BatchTokenizer(native=True)) == tokenize_batch(batch, BatchTokenizer(native=False))


def test_the_c_tokens_are_the_regular_expressions_on_every_chunk_of_a_corpus(data_dir):
    """sr_tokens against _TOKEN_RE.findall on the distinct chunks that are not one word of
    the four HATN domains (on every distinct chunk of the shared corpora, 256,089 of them,
    when it was written: the same tokens)."""
    lib = native.library()
    chunks: set[str] = set()
    for domain in ("kitchen", "books", "dvd", "electronics"):
        for part in ("review_positive", "review_negative"):
            lines = (data_dir / "amazon-hatn" / domain / part).read_text(encoding="utf-8").splitlines()
            chunks.update(_normalized_chunks(lines))
    hard = sorted(c for c in chunks if not c.isalnum() and c.isascii())
    assert len(hard) > 100_000
    joined = f" {_DOC} ".join(hard)
    assert native.tokens(lib, joined) == _TOKEN_RE.findall(joined)


# pieces that reach every alternative of _TOKEN_RE (and the places where one gives way to the next)
_PIECES = [*"anstmcorgdehpvlu09.,:/'-!?*`\"<>_() \x00"]
_PIECES += ["http://", "https://", "n't", ".com", "mr", "sept", "'s", "'90s", "co"]


@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
@settings(max_examples=3000, deadline=None)
def test_the_c_tokens_are_the_regular_expressions_on_random_text(text):
    assert native.tokens(native.library(), text) == _TOKEN_RE.findall(text)


def test_the_c_tokens_leave_text_that_is_not_ascii_to_the_regular_expression():
    lib = native.library()
    assert native.tokens(lib, "caf\u00e9 au lait") is None
    assert native.tokens(lib, "a\x01b") is None  # the separator of its output
    assert native.tokens(lib, "") == []


def test_the_memo_adds_new_chunks_with_the_next_codes_and_starts_again_bounded():
    memo = native.ChunkMemo(native.library())
    codes, starts, sizes = memo.chunks("a bb\u3000a\u00a0ccc\u2028bb".encode(), 7)
    assert codes.tolist() == [7, 8, 7, 9, 8]
    assert starts.tolist() == [0, 2, 10] and sizes.tolist() == [1, 2, 3]
    assert len(memo) == 3
    assert memo.chunks(b"ccc a", 100)[0].tolist() == [9, 7]
    memo.clear()
    assert len(memo) == 0 and memo.chunks(b"a", 0)[0].tolist() == [0]
    tokenizer = BatchTokenizer(max_chunks=50, native=True)
    for k in range(20):
        tokenizer.ids([f"w{k}_{j} x{j}" for j in range(30)])
        assert tokenizer._size() <= 50 + 60  # the limit, or one batch's chunks


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=300,
    )


PROBE = (
    "from sparse_rational import native; from sparse_rational.data.tokenize import BatchTokenizer;"
    "print(native.available(), native.build_error());"
    "print(BatchTokenizer(native=None)._native is None)"
)


def test_without_a_compiler_prediction_falls_back_to_numpy(tmp_path):
    run = _run(PROBE, CC="/nonexistent/cc", XDG_CACHE_HOME=str(tmp_path))
    assert run.returncode == 0, run.stderr
    available, tokenizer = run.stdout.splitlines()
    assert available.startswith("False FileNotFoundError") and tokenizer == "True"
    run = _run(PROBE, SPARSE_RATIONAL_NATIVE="0")
    assert run.stdout.splitlines() == ["False None", "True"]
    run = _run(PROBE, CC="cc --no-such-option", XDG_CACHE_HOME=str(tmp_path))  # a build that fails
    assert run.stdout.startswith("False cc failed:"), run.stdout
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing half-built left behind


def test_processes_that_build_at_once_all_get_the_library(tmp_path):
    code = "from sparse_rational import native; print(native.available(), native.build_error())"
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)
    ]
    assert [p.communicate(timeout=300)[0].strip() for p in procs] == ["True None"] * 4
    built = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert built == ["folded.so"]  # one library, no temporary file left


def test_copies_and_pickles_of_a_tokenizer_start_their_own_memo():
    import copy
    import pickle

    tokenizer = BatchTokenizer(native=True)
    texts = ["Hello world, don't!", "new words here"]
    expected = tokenize_batch(texts, BatchTokenizer(native=False))
    assert tokenize_batch(texts[:1], tokenizer) == expected[:1]
    for other in (copy.deepcopy(tokenizer), pickle.loads(pickle.dumps(tokenizer)), copy.copy(tokenizer)):
        assert other._native is not None and other._native is not tokenizer._native
        assert tokenize_batch(texts, other) == expected
    assert tokenize_batch(texts, tokenizer) == expected
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(tokenizer._native)  # it would free the same C memory twice


def test_an_interrupted_batch_leaves_the_tokenizer_consistent(monkeypatch):
    tokenizer = BatchTokenizer(native=True)
    expected = tokenize_batch(["one two", "three, four!"], BatchTokenizer(native=False))
    assert tokenize_batch(["one two"], tokenizer) == expected[:1]

    def interrupted(chunks):
        raise KeyboardInterrupt

    monkeypatch.setattr(tokenizer, "_learn", interrupted)
    with pytest.raises(KeyboardInterrupt):  # the C memo had added "three," and "four!" already
        tokenizer.ids(["three, four!"])
    monkeypatch.undo()
    assert tokenize_batch(["one two", "three, four!"], tokenizer) == expected


def test_threads_may_share_a_tokenizer():
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"text {k}: words{k % 97}, more{k % 13}! and {k}" for k in range(4000)]
    expected = tokenize_batch(texts, BatchTokenizer(native=False))
    shared = BatchTokenizer(max_chunks=3000, native=True)  # new chunks and resets all along
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: tokenize_batch(texts[k : k + 100], shared), range(0, 4000, 100)))
    assert [t for batch in got for t in batch] == expected


# ------------------------------------------------------------------------------------------
# New chunks learned in C with the vocabulary (sr_learn)


def _vocabulary(texts: list[str]) -> dict[str, int]:
    """A vocabulary of every other token of ``texts`` (and ``<unk>``), so that some tokens
    are in it and some are not, non-ASCII ones too."""
    tokens = sorted({t for doc in tokenize_batch(texts, BatchTokenizer(native=False)) for t in doc})
    return {t: i for i, t in enumerate(["<unk>", *tokens[::2]])}


def _same_ids_in_c(texts: list[str], monkeypatch, batch: int = 5000) -> BatchTokenizer:
    """The ids of ``texts`` (in batches) with new chunks learned in C equal those of the
    Python tokenizer, with a vocabulary; returns the C-learning tokenizer."""
    module = importlib.import_module("sparse_rational.data.tokenize")  # (the package's `tokenize` is the function)
    monkeypatch.setattr(module, "_C_VOCABULARY_FROM", 1)  # every batch learns in C
    vocab = _vocabulary(texts)
    fast, slow = BatchTokenizer(vocab, default=0), BatchTokenizer(vocab, default=0, native=False)
    for k in range(0, len(texts), batch):
        got, expected = fast.ids(texts[k : k + batch]), slow.ids(texts[k : k + batch])
        assert got[0].tolist() == expected[0].tolist() and got[1].tolist() == expected[1].tolist()
    return fast


def test_new_chunks_learned_in_c_get_the_ids_of_python_for_every_character(monkeypatch):
    texts = _every_character()
    assert _same_ids_in_c(texts, monkeypatch)._vocab_memo is not None  # it did learn in C


def test_new_chunks_learned_in_c_get_the_ids_of_python_on_a_corpus(data_dir, monkeypatch):
    """Every review of the kitchen HATN domain (new chunks in every batch), then again (none)."""
    lines = []
    for part in ("review_positive", "review_negative"):
        lines += (data_dir / "amazon-hatn" / "kitchen" / part).read_text(encoding="utf-8").splitlines()
    assert len(lines) > 5000
    assert _same_ids_in_c(lines + lines, monkeypatch, batch=700)._vocab_memo is not None


@given(st.lists(st.lists(st.sampled_from([*_PIECES, "\u00e9", "Caf\u00c9", "\u2019s", "x" * 9]), max_size=30)))
@settings(max_examples=300, deadline=None)
def test_new_chunks_learned_in_c_get_the_ids_of_python_on_random_text(pieces):
    texts = ["".join(p) for p in pieces]
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same_ids_in_c(texts, monkeypatch, batch=3)


def test_the_vocabulary_goes_to_c_only_for_a_batch_with_many_new_chunks():
    """A one-line ``predict`` does not pay for copying the vocabulary into C."""
    vocab = {"<unk>": 0, "good": 1, "bad": 2}
    tokenizer = BatchTokenizer(vocab, default=0)
    assert tokenizer.ids(["good, not bad"])[0].tolist() == [1, 0, 0, 2]
    assert tokenizer._vocab_memo is None
    many = [" ".join(f"w{k}x{j}" for j in range(64)) for k in range(100)]  # 6,400 new chunks
    ids, lengths = tokenizer.ids([*many, "good bad"])
    assert tokenizer._vocab_memo is not None
    assert lengths.tolist() == [64] * 100 + [2] and ids[-2:].tolist() == [1, 2] and not ids[:-2].any()
    assert BatchTokenizer(dict(vocab), default=0).__getstate__().get("_vocab_memo", None) is None


def test_a_large_vocabulary_goes_to_c_once_python_has_learned_a_quarter_as_many_chunks():
    vocab = {"<unk>": 0, **{f"v{k}": k + 1 for k in range(40_000)}}  # a quarter: 10,000
    tokenizer = BatchTokenizer(vocab, default=0)
    batch = [" ".join(f"v{k * 64 + j} w{k}x{j}" for j in range(32)) for k in range(100)]  # 6,400 new chunks
    ids, _ = tokenizer.ids(batch)
    assert tokenizer._vocab_memo is None and ids[0] == 1 and ids[1] == 0
    more = [" ".join(f"v{20_000 + k * 64 + j} y{k}x{j}" for j in range(32)) for k in range(100)]
    ids, _ = tokenizer.ids(more)  # 12,800 learned: the copy is made for this batch
    assert tokenizer._vocab_memo is not None and ids[0] == 20_001 and ids[1] == 0


def test_a_vocabulary_c_cannot_hold_is_looked_up_in_python():
    """Ids C cannot hold (negative) or keys that are not text: the Python lookup, as before."""
    many = [" ".join(f"w{k}x{j}" for j in range(64)) for k in range(100)]
    for vocab in ({"<unk>": 0, "good": -5}, {"<unk>": 0, "good": 1, 7: 2}):
        tokenizer = BatchTokenizer(vocab, default=0)
        ids, _ = tokenizer.ids([*many, "good"])
        assert tokenizer._vocab_memo is None and ids[-1] == vocab["good"] and not ids[:-1].any()

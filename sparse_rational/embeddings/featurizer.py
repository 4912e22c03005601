"""How text becomes the vectors a model reads: the featurizer seam (see docs/DESIGN.md,
'From text to logits').

A featurizer turns texts into documents, one tensor of row ids per text, and owns the rows
those ids stand for; the model only ever computes on vectors. Two featurizers:

* :class:`StaticVectors`: a vocabulary and its word vectors, :class:`StaticRows` ``[V, e]``
  (GloVe and other word-vector files), frozen or tuned. The ids are rows of the matrix; the
  model a classifier holds reads the featurizer's rows (the same object, its ``embeddings``
  submodule), and saves them with itself (``model.safetensors``, with the tokens in
  ``vocab.txt``), so a loaded model reads its own rows. Training gives each candidate
  model rows of its own (a copy); the finished classifier's featurizer owns the rows of
  the model it keeps.
* :class:`ContextualVectors`: a frozen transformer encoder and the :class:`RowTable` of the
  texts it has encoded (the training corpus, memory-mapped from the disk cache). The ids
  are rows of that table, which a model built over it reads but never saves. Texts the
  table lacks (new texts at prediction) are read from the cache or encoded in memory
  (nothing written) into a new table that extends it: neither the featurizer's table nor
  any model is changed by prediction.

What :meth:`Featurizer.encode` returns says which rows its ids index
(:attr:`Features.rows`); :meth:`~sparse_rational.model.RationalClassifier.reading` runs a
model on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import Tensor

from ..data.tokenize import CHARS_PER_TOKEN
from ..log import get_logger
from ..vocab import Vocabulary
from .encoder import ContextualEncoder
from .hf_options import TransformerOptions, is_contextual
from .rows import RowTable, StaticRows
from .static import SPECIALS, build_vocabulary, load_word_vectors

_log = get_logger(__name__)

if TYPE_CHECKING:
    from ..data import Splits


def cut_text(text: str, max_tokens: int) -> tuple[str, bool]:
    """``text`` cut to ``max_tokens * CHARS_PER_TOKEN`` characters (0: never), so that the
    memory of reading it stays bounded; and whether it was cut."""
    if max_tokens > 0 and len(text) > max_tokens * CHARS_PER_TOKEN:
        return text[: max_tokens * CHARS_PER_TOKEN], True
    return text, False


@dataclass
class Features:
    """Texts as a model reads them.

    ``docs``: one ``[T_i]`` long tensor of row ids per text. ``rows``: what the ids index
    (``rows.lookup(ids, mask, dtype) -> [..., e]``), the featurizer's :class:`StaticRows`
    or a :class:`RowTable` that extends its table. ``truncated``: texts cut by ``max_tokens``."""

    docs: list[Tensor]
    rows: Any
    truncated: int = 0


class Featurizer(Protocol):
    """Turns texts into row ids, and owns the vectors the ids stand for."""

    @property
    def source(self) -> str:
        """The embeddings the model was trained with (``glove-6b-50d``, a file, ``hf:...``)."""

    @property
    def dim(self) -> int:
        """``e``, the dimension of the vectors."""

    @property
    def vocab_size(self) -> int:
        """Rows a model built over this featurizer keeps (and saves) itself; 0: none, it
        reads vectors it does not hold."""

    @property
    def rows(self) -> Any:
        """The rows the ids index, which a model built over this featurizer reads
        (``RationalClassifier(config, featurizer.rows)``): the :class:`StaticRows` of the
        vocabulary, or the row table of the encoded corpus (None when no text has been
        encoded yet)."""

    @property
    def vocab(self) -> Vocabulary | None:
        """The vocabulary (static vectors), or None."""

    def encode(self, texts: Sequence[str], max_tokens: int = 0) -> Features:
        """Each text as row ids (``max_tokens > 0``: cut like a training document)."""

    def vectors(self, ids: Tensor) -> Tensor:
        """The vectors ``[..., e]`` (float32) of row ids of :attr:`rows`."""

    def describe(self) -> dict:
        """The ``embeddings`` section of a saved model's ``config.json``."""

    def token_settings(self) -> dict | None:
        """The ``tokens`` section of ``config.json`` (None: the featurizer has no tokens)."""

    def vocab_tokens(self) -> list[str]:
        """The lines of ``vocab.txt`` (row ``i`` of the saved matrix is token ``i``)."""


class StaticVectors:
    """A vocabulary and its word vectors ``rows`` (:class:`StaticRows` ``[V, e]``, row ``i``:
    token ``i``; given a tensor, frozen rows over a copy of it).

    Documents are ``<s> w_1 .. w_n </s>`` as token ids; ``max_tokens`` keeps the first
    ``max_tokens - 1`` tokens and ``</s>``, as :func:`~sparse_rational.train.truncate_docs`
    does in training."""

    def __init__(self, vocab: Vocabulary, source: str, rows: StaticRows | Tensor):
        if len(rows) != len(vocab):
            raise ValueError(f"a matrix of {len(rows)} rows for a vocabulary of {len(vocab)} tokens")
        self._vocab = vocab
        self.source = source
        self._rows = rows if isinstance(rows, StaticRows) else StaticRows(rows)

    def owning(self, rows: StaticRows) -> StaticVectors:
        """This featurizer over ``rows`` (self when they are already its own)."""
        return self if rows is self._rows else StaticVectors(self._vocab, self.source, rows)

    @property
    def matrix(self) -> Tensor:
        """The rows' values ``[V, e]``."""
        return self._rows.weight

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def rows(self) -> StaticRows:
        return self._rows

    def encode(self, texts: Sequence[str], max_tokens: int = 0) -> Features:
        docs, truncated = [], 0
        keep = max(max_tokens, 2)
        for text in texts:
            text, cut = cut_text(text, max_tokens)
            words = self._vocab.words(text)
            if max_tokens > 0 and len(words) > keep:
                words = words[: keep - 1] + words[-1:]
                cut = True
            truncated += cut
            docs.append(self._vocab.ids(words))
        return Features(docs, self._rows, truncated)

    def vectors(self, ids: Tensor) -> Tensor:
        return self._rows[ids]

    def describe(self) -> dict:
        return {"source": self.source, "normalized": True}

    def token_settings(self) -> dict:
        return self._vocab.token_settings()

    def vocab_tokens(self) -> list[str]:
        return list(self._vocab.tokens)

    @classmethod
    def build(
        cls,
        splits: Splits,
        source: str,
        seed: int,
        verbose: bool = True,
        num_classes: int | None = None,
        extra_texts: Sequence[str] = (),
    ) -> StaticVectors:
        """The vocabulary of ``splits`` and its vectors from ``source`` (see
        :func:`~sparse_rational.embeddings.static.build_vocabulary`): every word of train,
        dev, test and ``extra_texts`` (a teacher's transfer texts) that has a vector, every
        training word (a random vector if it has none)."""
        words = Vocabulary(list(SPECIALS))  # tokenizer and specials, before the vocabulary exists
        tokenized = {name: [words.words(ex.text) for ex in getattr(splits, name)] for name in ("train", "dev", "test")}
        corpus = [doc for docs in tokenized.values() for doc in docs] + [words.words(t) for t in extra_texts]
        vectors = load_word_vectors(source, restrict_to={w for doc in corpus for w in doc})
        tokens, matrix, stats = build_vocabulary(vectors, corpus, tokenized["train"], seed=seed)
        if verbose:
            _log.info(
                f"data: {len(splits.train)} train / {len(splits.dev)} dev / {len(splits.test)} test, "
                f"{num_classes} classes; vocabulary {stats['vocab']} ({stats['pretrained']} with "
                f"{source} vectors, {stats['oov_train']} OOV training words)",
            )
        return cls(Vocabulary(tokens), source, torch.from_numpy(matrix))


class ContextualVectors:
    """A frozen transformer ``encoder`` and ``table``, the :class:`RowTable` of the texts it
    has encoded (None: none yet, as in a loaded model).

    Texts in the table are its row ids. Other texts are read from the disk cache when a
    shard holds them all, else encoded in memory; nothing is written, and they get rows of
    a new table that extends this one (:attr:`Features.rows`), dropped with it."""

    def __init__(self, encoder: ContextualEncoder, table: RowTable | None = None):
        self.encoder = encoder
        self.table = table

    vocab = None

    @property
    def source(self) -> str:
        return self.encoder.source

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def vocab_size(self) -> int:
        return 0

    @property
    def rows(self) -> RowTable | None:
        return self.table

    def encode(self, texts: Sequence[str], max_tokens: int = 0) -> Features:
        cut = [cut_text(text, max_tokens) for text in texts]
        texts = [text for text, _ in cut]
        table = self.table
        missing = [t for t in dict.fromkeys(texts) if table is None or t not in table]
        if missing:
            table = (table if table is not None else RowTable(self.dim)).extended(
                self.encoder.vectors(missing, cache="read")
            )
        return Features([cast(RowTable, table).ids(t) for t in texts], table, sum(c for _, c in cut))

    def vectors(self, ids: Tensor) -> Tensor:
        if self.table is None:
            raise ValueError("no text has been encoded: the table is empty")
        return self.table[ids]

    def describe(self) -> dict:
        return self.encoder.describe()

    def token_settings(self) -> None:
        return None

    def vocab_tokens(self) -> list[str]:
        return []

    @classmethod
    def build(
        cls,
        splits: Splits,
        source: str,
        options: TransformerOptions | None = None,
        verbose: bool = True,
        device: str | None = None,
    ) -> tuple[ContextualVectors, dict]:
        """Encode (or read from the cache) every text of ``splits`` once, on ``device``
        (None: CUDA when available); the vectors stay memory-mapped on the host.

        Returns the featurizer, whose table holds all the texts, and ``info`` (encoding
        seconds, cache path and size) for the metrics."""
        encoder = ContextualEncoder(  # the user named it: it may be downloaded
            source, options, verbose=verbose, allow_download=True, device=device
        )
        texts = [ex.text for name in ("train", "dev", "test") for ex in getattr(splits, name)]
        enc = encoder.vectors(texts, cache="readwrite")
        table = RowTable(encoder.dim)
        table.append(enc)
        info = {
            "encoder": encoder.identity(),
            "options": encoder.options.to_dict(),
            "pieces": int(enc.vectors.shape[0]),
            "from_cache": enc.from_cache,
            "encode_seconds": round(enc.encode_seconds, 2),
            "cache_read_seconds": round(enc.read_seconds, 2),
            "cache_bytes": enc.cache_bytes,
            "cache_path": str(enc.cache_path) if enc.cache_path else None,
        }
        if verbose:
            src = "read from the cache" if enc.from_cache else f"encoded in {enc.encode_seconds:.1f}s"
            _log.info(
                f"{source}: {len(set(texts))} texts, {info['pieces']} word pieces of dimension {encoder.dim}, {src}",
            )
        return cls(encoder, table), info


def build_featurizer(
    splits: Splits,
    source: str,
    seed: int,
    *,
    verbose: bool = True,
    hf_options: TransformerOptions | None = None,
    num_classes: int | None = None,
    device: str | None = None,
    extra_texts: Sequence[str] = (),
) -> tuple[Featurizer, dict]:
    """The featurizer that ``source`` names, built from the texts of ``splits``, and what
    the metrics record of it (``{"encoding": ...}`` for transformer vectors, encoded on
    ``device``)."""
    if is_contextual(source):
        featurizer, info = ContextualVectors.build(splits, source, hf_options, verbose=verbose, device=device)
        return featurizer, {"encoding": info}
    return StaticVectors.build(splits, source, seed, verbose, num_classes, extra_texts), {}


def prepare_contextual(
    splits: Splits, embeddings: str, options: TransformerOptions | None, verbose: bool = True
) -> tuple[ContextualEncoder, RowTable, dict]:
    """``(encoder, table, info)`` of :meth:`ContextualVectors.build` (the earlier form)."""
    featurizer, info = ContextualVectors.build(splits, embeddings, options, verbose=verbose)
    return featurizer.encoder, cast(RowTable, featurizer.table), info

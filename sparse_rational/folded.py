"""Prediction without PyTorch for models on static word vectors: the folded table.

With frozen static vectors, the transition weights of every state depend on the token
alone, so the input projection can be folded into the vocabulary once::

    table[t] = (E[t] @ w,  E[t] @ v + b)                        [V, 2N] float32
    f = sigmoid(table[t, N:]),   u = table[t, :N] * (1 - f)       per token, not per step

(``E`` the model's frozen rows, ``w, v`` ``[e, N]``, ``b`` ``[N]``; N = transitions: 40
floats per word for a 20-transition model instead of the 50-300 of the vector.) A document
is then a gather from the table and the recurrence of ops/reference.py, in numpy::

    c_s(t) = f_s(x_t) c_s(t-1) + u_s(x_t) p_s(t-1),   p_s = 1 for q_1, else c_{s-1}

read out as the model does (``final``, ``mean`` or ``max`` over the real tokens), summed per
WFSA, and fed to the linear layer and a softmax.

Why not the C++ operator: importing PyTorch alone takes over 200 MB and a second or two,
more than reading thousands of documents this way costs; this module, the tokenizer and
the loader import numpy and safetensors only. The recurrence runs in the plain C of
:mod:`sparse_rational.native` (document by document, one vectorised pass over the states
per token) when a C compiler is at hand, and otherwise in numpy, one time step at a time
for a whole batch of documents (sorted by length, so the documents still being read at
step ``t`` are a prefix of the batch); both give the same float32 bits, and neither has a
Python loop over documents or tokens.

The table is built from the saved model when it is loaded (a matrix product of ``[V, e]``
by ``[e, 2N]``, milliseconds); the saved model is unchanged. :class:`FoldedClassifier`
reads a model folder without PyTorch; :meth:`FoldedModel.from_torch` folds a model in
memory (what :class:`~sparse_rational.pipeline.TextClassifier` uses).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load

from . import native, validate
from .data.tokenize import CHARS_PER_TOKEN, BatchTokenizer
from .errors import UserError, one_line
from .layout import StateLayout

READOUTS = ("final", "mean", "max")  # those the recurrence below implements (the model's)
FORMAT = "sparse-rational/1"  # pipeline.FORMAT (checked equal in the tests), without importing PyTorch


def _sigmoid_pair(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f = sigmoid(a)`` and ``1 - f``, both without cancellation (float64)."""
    z = np.exp(-np.abs(a))
    inv = 1.0 / (1.0 + z)
    pos = a >= 0
    return np.where(pos, inv, z * inv), np.where(pos, z * inv, inv)


@dataclass
class FoldedModel:
    """A rational classifier on static vectors with its projection folded into the vocabulary.

    ``table``: ``[V, 2N]`` float32, ``(E @ w, E @ v + b)`` per token row; ``structure``: the
    WFSA lengths (N = their sum); ``weight [C, d]``, ``bias [C]``: the linear layer;
    ``readout``: ``final``, ``mean`` or ``max``."""

    table: np.ndarray
    structure: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray
    readout: str = "final"
    compiled: bool = True  # the C recurrence of sparse_rational.native when it can be built (same bits)
    _fu: np.ndarray = field(init=False, repr=False)  # [V, 2N] float32: f then u of every state
    _first: np.ndarray = field(init=False, repr=False)  # [N] int32: 1 at each WFSA's first state
    _columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(init=False, repr=False, default=None)
    _combine: np.ndarray = field(init=False, repr=False)  # [N, C] float32: state -> its WFSA's logits

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        self.structure = tuple(int(n) for n in self.structure)
        n = sum(self.structure)
        if self.table.ndim != 2 or self.table.shape[1] != 2 * n:
            raise ValueError(f"table of shape {self.table.shape} for {n} transitions")
        f, one_minus_f = _sigmoid_pair(self.table[:, n:].astype(np.float64))
        self._fu = np.empty_like(self.table, np.float32)  # a token's f and u side by side: one read
        self._fu[:, :n], self._fu[:, n:] = f, self.table[:, :n].astype(np.float64) * one_minus_f
        del f, one_minus_f
        layout = StateLayout.of(self.structure)
        self._first = np.asarray(layout.flags, np.int32).reshape(n)  # (no WFSA left: no state)
        owner = np.asarray(layout.owners, np.int64).reshape(n)
        self._combine = np.ascontiguousarray(self.weight.astype(np.float32)[:, owner].T)  # [N, C]

    def _padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The numpy path's columns: every WFSA's q_0 (always 1), then its states q_1..q_n,
        WFSA after WFSA (M = N + d columns): ``(f, u, real)``, ``[V, M]`` each and the column
        of each state. Column k reads column k-1 as its predecessor, so one update serves
        every column: c[k] = f[k] c[k] + u[k] c[k-1], with f = 1, u = 0 at a q_0 (it stays
        1). The documents' rows of c are contiguous, so the update runs over the flat array,
        with the term that a row's first column reads from the row before set to 0."""
        if self._columns is None:
            first = np.cumsum([0, *[k + 1 for k in self.structure]])[:-1]  # q_0 column of each WFSA
            real = np.concatenate(  # (no WFSA left after pruning: no column)
                [np.zeros(0, np.int64), *[np.arange(s + 1, s + 1 + k) for s, k in zip(first, self.structure)]]
            ).astype(np.int64)
            cols = self.transitions + len(self.structure)
            f = np.ones((self.table.shape[0], cols), np.float32)
            u = np.zeros((self.table.shape[0], cols), np.float32)
            n = self.transitions
            f[:, real], u[:, real] = self._fu[:, :n], self._fu[:, n:]
            self._columns = (f, u, real)
        return self._columns

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def fold(
        cls,
        embeddings: np.ndarray,
        w: np.ndarray,
        v: np.ndarray,
        b: np.ndarray,
        structure: Sequence[int],
        weight: np.ndarray,
        bias: np.ndarray,
        readout: str = "final",
    ) -> FoldedModel:
        """Fold ``embeddings [V, e]`` into the projection ``w, v [e, N]``, ``b [N]``."""
        emb = np.asarray(embeddings, np.float32)
        proj = emb @ np.concatenate([np.asarray(w, np.float32), np.asarray(v, np.float32)], axis=1)
        n = proj.shape[1] // 2
        proj[:, n:] += np.asarray(b, np.float32)
        return cls(proj, tuple(structure), np.asarray(weight, np.float32), np.asarray(bias, np.float32), readout)

    @classmethod
    def from_torch(cls, model: Any) -> FoldedModel:
        """The folded form of a :class:`~sparse_rational.model.RationalClassifier` over static
        vectors (``vocab_size > 0``)."""

        def arr(t: Any) -> np.ndarray:
            return t.detach().cpu().float().numpy()

        if not model.config.vocab_size:
            raise ValueError("only a model on static word vectors (vocab_size > 0) can be folded")
        return cls.fold(
            arr(model.embeddings.weight),  # the static rows the model reads (StaticRows)
            arr(model.wfsa.w),
            arr(model.wfsa.v),
            arr(model.wfsa.b),
            model.config.structure,
            arr(model.classifier.weight),
            arr(model.classifier.bias),
            model.config.readout,
        )

    @property
    def transitions(self) -> int:
        return sum(self.structure)

    # -- reading -----------------------------------------------------------------------------
    def states(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The read-out states ``[n, N]`` (float32) of ``n`` documents given as token rows
        one after another (``ids``, ``lengths[i]`` of them for document ``i``)."""
        lengths = np.asarray(lengths, np.int64)
        count, cols = len(lengths), self.transitions + len(self.structure)
        if count == 0 or cols == 0 or not self.structure:
            return np.zeros((count, self.transitions), np.float32)
        lib = native.library() if self.compiled else None
        if lib is not None:
            return native.states(lib, ids, lengths, self._fu, self._first, self.readout)
        col_f, col_u, real = self._padded()
        # documents longest first: those still being read at step t are rows [0, active[t])
        order = np.argsort(-lengths, kind="stable")
        lens = lengths[order]
        longest = int(lens[0])
        active = np.searchsorted(-lens, -np.arange(longest), side="left")  # docs with length > t
        # the tokens packed step by step: step t holds the t-th token of docs 0..active[t]-1
        step_start = np.concatenate([[0], np.cumsum(active)])
        doc_start = np.concatenate([[0], np.cumsum(lengths)])[:-1][order]
        doc = np.repeat(np.arange(count), lens)
        t = np.arange(len(doc)) - np.repeat(np.concatenate([[0], np.cumsum(lens)])[:-1], lens)
        packed = np.empty(len(doc), np.int64)
        packed[step_start[t] + doc] = np.asarray(ids, np.int64)[doc_start[doc] + t]
        c = np.ones((count, cols), np.float32)  # q_0 columns stay 1
        c[:, real] = 0.0
        f, u = np.empty_like(c), np.empty_like(c)
        readout = self.readout
        pooled = np.full((count, cols), -np.inf if readout == "max" else 0.0, np.float32)
        flat_c, flat_f, flat_u = c.reshape(-1), f.reshape(-1), u.reshape(-1)
        for step in range(longest):
            n = int(active[step])
            rows = packed[step_start[step] : step_start[step] + n]
            end = n * cols
            cs, fs, us = flat_c[:end], flat_f[:end], flat_u[:end]
            np.take(col_f, rows, axis=0, out=f[:n])
            np.take(col_u, rows, axis=0, out=u[:n])
            np.multiply(us[1:], cs[:-1], out=us[1:])  # u c_{k-1}(t-1), before c changes
            us[cols::cols] = 0.0  # a row's first column, times the previous row's last (inf * 0)
            np.multiply(cs, fs, out=cs)  # f c_k(t-1)
            np.add(cs[1:], us[1:], out=cs[1:])
            if readout == "max":
                np.maximum(pooled[:n], c[:n], out=pooled[:n])
            elif readout == "mean":
                np.add(pooled[:n], c[:n], out=pooled[:n])
        if readout == "final":
            out = c
        elif readout == "mean":
            out = pooled / np.maximum(lens, 1)[:, None].astype(np.float32)
        else:
            out = np.where(lens[:, None] > 0, pooled, np.float32(0.0))
        result = np.empty((count, self.transitions), np.float32)
        result[order] = out[:, real]
        return result

    def logits(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``[n, C]`` float32: the WFSA scores (the states summed per WFSA) through the linear layer."""
        return self.states(ids, lengths) @ self._combine + self.bias.astype(np.float32)

    def proba(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, C]`` (float32) of the documents (see :meth:`states`)."""
        z = self.logits(ids, lengths)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


class TokenEncoder:
    """Raw text to the token rows a model reads, as ``predict`` reads them: the tokenizer of
    the vocabulary ``tokens`` (:class:`~sparse_rational.data.tokenize.BatchTokenizer`),
    ``<s>``/``</s>`` around each document and ``unk`` for a word the vocabulary lacks.
    :class:`FoldedClassifier` and the ONNX export's reader
    (:func:`sparse_rational.export.onnx_predict_proba`) share it."""

    def __init__(self, tokens: Sequence[str], bos: str | None, eos: str | None, unk: str):
        index = {t: i for i, t in enumerate(tokens)}
        for name, tok in (("unk", unk), ("bos", bos), ("eos", eos)):
            if tok is not None and tok not in index:
                raise ValueError(f"vocabulary has no {name} token {tok!r}")
        self.vocab_size = len(index)
        self.tokens = tokens  # the vocabulary (id i is tokens[i]) and the special tokens, as given
        self.bos_token, self.eos_token, self.unk_token = bos, eos, unk
        self.bos = index[bos] if bos is not None else None
        self.eos = index[eos] if eos is not None else None
        unk_id = self.unk = index[unk]
        self.tokenizer = BatchTokenizer(index, default=unk_id)
        self.truncated_texts = 0
        self._lock = threading.Lock()  # the tokenizer's memo and the count; the recurrence runs unlocked

    def encode(self, texts: Sequence[str], max_tokens: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)``: the token rows of all documents ``<s> w_1 .. w_n </s>`` one
        after another. With ``max_tokens > 0`` a text is first cut to ``max_tokens *
        CHARS_PER_TOKEN`` characters, and a longer document keeps its first ``max_tokens - 1``
        tokens and ``</s>``, as in training (``truncated_texts`` counts the texts cut)."""
        with self._lock:
            return self._encode(list(texts), max_tokens)[:2]

    def _encode(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, lengths, known)``; ``known``: the tokens read of each text that the vocabulary knows."""
        cut = np.zeros(len(texts), bool)
        if max_tokens > 0 and texts:
            limit = max_tokens * CHARS_PER_TOKEN
            sizes = np.fromiter(map(len, texts), np.int64, len(texts))
            for i in np.flatnonzero(sizes > limit).tolist():  # only the texts that are too long
                texts[i] = texts[i][:limit]
                cut[i] = True
        words, counts = self.tokenizer.ids(texts)
        extra = (self.bos is not None) + (self.eos is not None)
        lengths = counts + extra
        starts = np.concatenate([[0], np.cumsum(lengths)])
        ids = np.empty(int(starts[-1]), np.int64)
        body = np.ones(len(ids), bool)
        if self.bos is not None:
            ids[starts[:-1]] = self.bos
            body[starts[:-1]] = False
        if self.eos is not None:
            ids[starts[1:] - 1] = self.eos
            body[starts[1:] - 1] = False
        ids[body] = words
        if max_tokens > 0:
            keep = max(max_tokens, 2)
            long = lengths > keep
            if long.any():
                cut |= long
                position = np.arange(len(ids)) - np.repeat(starts[:-1], lengths)
                doc_len = np.repeat(lengths, lengths)
                kept = (doc_len <= keep) | (position < keep - 1) | (position == doc_len - 1)
                ids = ids[kept]
                lengths = np.minimum(lengths, keep)
        self.truncated_texts += int(cut.sum())
        # the tokens read that the vocabulary knows (not <unk>, <s>, </s>), as TextClassifier.known_tokens
        known_id = ids != self.unk
        for special in (self.bos, self.eos):
            if special is not None:
                known_id &= ids != special
        owner = np.repeat(np.arange(len(texts)), lengths)
        known = np.bincount(owner, weights=known_id, minlength=len(texts)).astype(np.int64)
        return ids, lengths, known


class FoldedClassifier(TokenEncoder):
    """Raw text to probabilities for a model on static word vectors, without PyTorch:
    the tokenizer of the model's vocabulary (:class:`TokenEncoder`) and its :class:`FoldedModel`."""

    def __init__(
        self,
        model: FoldedModel,
        tokens: Sequence[str],
        classes: Sequence[str],
        bos: str | None,
        eos: str | None,
        unk: str,
    ):
        super().__init__(tokens, bos, eos, unk)
        if model.table.shape[0] != self.vocab_size:
            raise ValueError(f"a table of {model.table.shape[0]} rows for a vocabulary of {self.vocab_size} tokens")
        self.model = model
        self.classes = list(classes)

    def predict_proba(self, texts: Sequence[str], max_tokens: int = 0) -> np.ndarray:
        """Probabilities ``[n, C]`` float32 (columns in the order of ``classes``)."""
        return self.predict_details(texts, max_tokens)[0]

    def predict_details(self, texts: Sequence[str], max_tokens: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[n, C]`` and the number of tokens of each text in the vocabulary
        (0: the model saw no word it knows, and its answer is about the class prior)."""
        if not len(texts):
            return np.zeros((0, len(self.classes)), np.float32), np.zeros(0, np.int64)
        with self._lock:
            ids, lengths, known = self._encode(list(texts), max_tokens)
        return self.model.proba(ids, lengths), known

    @classmethod
    def from_classifier(cls, clf: Any) -> FoldedClassifier:
        """The folded form of a :class:`~sparse_rational.pipeline.TextClassifier` on static vectors."""
        vocab = clf.vocab
        if vocab is None:
            raise ValueError("only a model on static word vectors can be folded")
        return cls(FoldedModel.from_torch(clf.model), vocab.tokens, clf.classes, vocab.bos, vocab.eos, vocab.unk)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FoldedClassifier | None:
        """Read a model folder without PyTorch, every field checked (one-line
        :class:`~sparse_rational.errors.UserError` naming the file); None if the model reads
        transformer vectors (it needs :meth:`TextClassifier.load
        <sparse_rational.pipeline.TextClassifier.load>`)."""
        return load_folded(path)


def _one_layer(model: dict) -> bool:
    """A config of one left-to-right layer (stacked and bidirectional models record
    ``layers``/``stack``; only the PyTorch model reads them)."""
    return "stack" not in model and "layers" not in model


def _check_config(cfg: Any, path: Path) -> dict | None:
    """The ``"model"`` section of a static-vector model's config, checked (None: not static,
    or a stacked or bidirectional model, which only the PyTorch model reads)."""
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise UserError(f"{path}: not a {FORMAT} model config")
    raw = cfg.get("model")
    if not isinstance(raw, dict):
        raise UserError(f'{path}: "model" must be a JSON object')
    size = raw.get("vocab_size", 0)
    if isinstance(size, int) and not isinstance(size, bool) and size == 0:
        return None
    return raw if _one_layer(raw) else None


def load_folded(path: str | os.PathLike) -> FoldedClassifier | None:
    """See :meth:`FoldedClassifier.load`."""
    folder = validate.open_model_folder(path)  # the one model-folder reader
    cfg = folder.config
    config_path, weights, vocab = (
        folder.path / validate.CONFIG,
        folder.path / validate.WEIGHTS,
        folder.path / validate.VOCAB,
    )
    raw = _check_config(cfg, config_path)
    if raw is None:
        return None
    model = validate.model_fields(raw, config_path)
    classes = validate.classes_list(cfg.get("classes"), config_path)
    tok = validate.token_settings(cfg.get("tokens"), config_path)
    tokens = folder.vocab(model["vocab_size"])
    if len(classes) != model["num_classes"]:
        raise UserError(f"{config_path}: {len(classes)} classes but num_classes={model['num_classes']}")
    try:
        tensors = load(folder.weights(validate.static_shapes(model)))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise UserError(f"{weights}: cannot read safetensors ({one_line(exc)})") from None
    validate.check_arrays(tensors, model, weights)
    a = {k: np.asarray(v, np.float32) for k, v in tensors.items()}
    folded = FoldedModel.fold(
        a["embeddings"],
        a["wfsa.w"],
        a["wfsa.v"],
        a["wfsa.b"],
        model["structure"],
        a["classifier.weight"],
        a["classifier.bias"],
        model.get("readout", "final"),
    )
    try:
        return FoldedClassifier(folded, tokens, classes, tok["bos"], tok["eos"], tok["unk"])
    except ValueError as exc:
        raise UserError(f"{vocab} does not fit the token settings of {config_path} ({exc})") from None


def is_static_model(path: str | os.PathLike) -> bool:
    """Whether the folder's config names a model on static word vectors (cheap; False when
    the config cannot be read: the full loader then says what is wrong)."""
    cfg = validate.peek_config(path)
    try:
        return cfg is not None and bool(cfg["model"]["vocab_size"]) and _one_layer(cfg["model"])
    except (KeyError, TypeError):
        return False

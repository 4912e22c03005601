"""Documents as the explanations read them, and their best/worst path scores over a corpus
(see :mod:`.table` for the whole picture and docs/DESIGN.md, 'Best paths for explanations')."""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..data import Example
from ..ops.reference import transition_weights
from .paths import PathDecoder, WFSAPath, max_min_scores

SL = "_SL"
MAX_CELL = 40
DOC_MAX_LOOPS = 6  # --doc shows self-loop runs of up to 6 words in full
DECODE_TOKENS = 1 << 16  # padded tokens per batch while the DP's history is kept
DOC_SPANS = 8  # --doc lists the 8 spans that add most to the predicted class, and 3 that take most
DOC_SPANS_AGAINST = 3


def pooled(model) -> bool:
    """Whether ``model`` pools its states over the document (readout ``mean`` or ``max``)."""
    return getattr(model.config, "readout", "final") != "final"


# -- documents ---------------------------------------------------------------------------
@dataclass
class Document:
    """One document as the model reads it.

    ``tokens``: the display string of each position (``<s> w_1 .. w_n </s>``);
    ``ids``: ``[T]`` rows of the model's embedding matrix, or ``vectors``: ``[T, e]``
    (contextual encoders); ``word_of``: for word pieces, the word index of each position
    (None: one position per word).
    """

    tokens: list[str]
    ids: Tensor | None = None
    vectors: Tensor | None = None
    label: str | None = None
    text: str = ""
    word_of: list[int] | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def encode_documents(clf, examples: Sequence[Example] | Sequence[str]) -> list[Document]:
    """Documents for a :class:`~sparse_rational.pipeline.TextClassifier`: word ids for a
    model on word vectors, word-piece vectors (with their words) for a transformer model."""
    texts = [ex if isinstance(ex, str) else ex.text for ex in examples]
    labels = [None if isinstance(ex, str) else ex.label for ex in examples]
    if clf.vocab is None:
        return _contextual_documents(clf, texts, labels)
    out = []
    for text, label in zip(texts, labels):
        tokens = clf.vocab.words(text)
        out.append(Document(tokens, ids=clf.vocab.ids(tokens), label=label, text=text))
    return out


def _contextual_documents(clf, texts: list[str], labels: list[str | None]) -> list[Document]:
    """Word pieces shown by their characters in the text (special tokens as ``<s>``,
    ``</s>`` and ``|`` between segments); ``word_of`` groups pieces of one word (a piece
    that starts where the previous one ended continues its word)."""
    encoded = clf.encoder.vectors(texts, cache="read")
    out = []
    for text, label in zip(texts, labels):
        vectors, offsets = encoded.rows(text)
        tokens, word_of, word, prev_end = [], [], -1, None
        last = len(offsets) - 1
        for k, (a, b) in enumerate(offsets.tolist()):
            if b <= a:  # a special token: [CLS] / [SEP]
                tokens.append("<s>" if k == 0 else "</s>" if k == last else "|")
                word, prev_end = word + 1, None
            else:
                if prev_end is None or a != prev_end:
                    word += 1
                tokens.append(text[a:b])
                prev_end = b
            word_of.append(word)
        out.append(Document(tokens, vectors=vectors, label=label, text=text, word_of=word_of))
    return out


def batch_vectors(model, docs: Sequence[Document]) -> tuple[Tensor, Tensor]:
    """Right-padded vectors ``[B, T, e]`` (zeros at padding) and the mask ``[B, T]``."""
    T = max(len(d) for d in docs)
    e = model.config.embedding_dim
    device = model.classifier.weight.device
    x = torch.zeros(len(docs), T, e, device=device, dtype=model.wfsa.w.dtype)
    mask = torch.zeros(len(docs), T, dtype=torch.bool, device=device)
    for k, d in enumerate(docs):
        if d.vectors is not None:
            v = d.vectors.to(device=device, dtype=x.dtype)
        elif d.ids is not None and model.embeddings is not None:  # the one call a model makes on its rows
            v = model.embeddings.lookup(d.ids, mask, x.dtype)
        else:
            raise ValueError("a document needs vectors, or ids and a model with embeddings")
        x[k, : len(d)] = v
        mask[k, : len(d)] = True
    return x, mask


def _weights(model, x: Tensor) -> tuple[Tensor, Tensor]:
    """``u, f``: ``[T, B, N]`` for vectors ``x [B, T, e]``."""
    wf = model.wfsa
    return transition_weights(x.transpose(0, 1), wf.w, wf.v, wf.b)


def _batches(docs: Sequence[Document], batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Indices sorted by length (little padding), ``batch_size`` documents per batch, and at
    most ``max_tokens`` padded tokens (a longer document is a batch of its own)."""
    order = np.argsort([len(d) for d in docs], kind="stable")
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out, start = [], 0
    while start < len(order):
        stop = start + 1
        while (
            stop < len(order)
            and stop - start < batch_size
            and (stop - start + 1) * len(docs[order[stop]]) <= max_tokens
        ):
            stop += 1
        out.append(order[start:stop])
        start = stop
    return out


# -- scoring a corpus --------------------------------------------------------------------
@dataclass
class CorpusScores:
    """Per document: best/worst path score ``[n, d]`` (at the end, or anywhere for a pooled
    model), the model's (plus-times) WFSA scores ``[n, d]`` and logits ``[n, C]``; with
    ``decode``, ``paths[i]``: the states of document ``i``'s best and worst path of every
    WFSA, ``[d, 2, len]`` (``NOT_READ`` where not read)."""

    best: Tensor
    worst: Tensor
    scores: Tensor
    logits: Tensor
    paths: list[np.ndarray] | None = None


@torch.no_grad()
def score_documents(model, docs: Sequence[Document], batch_size: int = 128, decode: bool = False) -> CorpusScores:
    """Score every document (batched, sorted by length; the DP's history is kept only for a
    pooled model or with ``decode``, in batches of at most ``DECODE_TOKENS`` tokens)."""
    was_training = model.training
    model.eval()
    n, d, C = len(docs), model.wfsa.num_wfsas, model.config.num_classes
    anywhere = pooled(model)
    dtype = model.wfsa.w.dtype
    best, worst = torch.zeros(n, d, dtype=dtype), torch.zeros(n, d, dtype=dtype)
    scores, logits = torch.zeros(n, d, dtype=dtype), torch.zeros(n, C, dtype=dtype)
    paths: list[np.ndarray] | None = [np.zeros((d, 2, len(doc)), dtype=np.int16) for doc in docs] if decode else None
    try:
        for idx in _batches(docs, batch_size, DECODE_TOKENS if (decode or anywhere) else None):
            x, mask = batch_vectors(model, [docs[i] for i in idx])
            rows = torch.as_tensor(idx)
            s = model.scores(x, mask)
            logits[rows] = model.classifier(s).cpu().to(dtype)
            if model.config.deep:  # Table 1 shows the first layer's left-to-right WFSAs
                s = model.wfsa(x.transpose(0, 1), mask.transpose(0, 1))
            scores[rows] = s.cpu().to(dtype)
            if not d:
                continue
            u, f = _weights(model, x)
            if not decode:
                b_, w_ = max_min_scores(u, f, model.wfsa.is_first, model.wfsa.owner, mask.transpose(0, 1), anywhere)
                best[rows], worst[rows] = b_.cpu().to(dtype), w_.cpu().to(dtype)
                continue
            dec = PathDecoder(u, f, model.wfsa.is_first, mask.transpose(0, 1))
            B = len(idx)
            reqs = []  # (j, kind, end [B], state [B])
            for j in range(d):
                for kind, target in (("best", best), ("worst", worst)):
                    end, state, value = dec.select(j, kind, anywhere)
                    target[rows, j] = torch.as_tensor(value).to(dtype)
                    reqs.append((j, kind, end, state))
            bs = np.tile(np.arange(B), len(reqs))
            traced = dec.trace(
                bs,
                np.repeat([r[0] for r in reqs], B),
                np.repeat([r[1] for r in reqs], B),
                np.concatenate([r[2] for r in reqs]),
                np.concatenate([r[3] for r in reqs]),
            )
            traced = traced.reshape(d, 2, B, -1)
            assert paths is not None
            for b, i in enumerate(idx):
                paths[i][:] = traced[:, :, b, : len(docs[i])]
    finally:
        model.train(was_training)
    return CorpusScores(best, worst, scores, logits, paths)


@torch.no_grad()
def decode_documents(
    model,
    docs: Sequence[Document],
    requests: Sequence[tuple[int, int, str]],
    batch_size: int = 32,
    anywhere: bool | None = None,
) -> dict[tuple[int, int, str], WFSAPath]:
    """Paths ``{(doc, wfsa, kind): WFSAPath}`` for the requested documents only; ``anywhere``
    (default: whether the model pools its states) lets them end at any token."""
    anywhere = pooled(model) if anywhere is None else anywhere
    by_doc: dict[int, list[tuple[int, str]]] = {}
    for i, j, kind in requests:
        by_doc.setdefault(i, []).append((j, kind))
    wanted = sorted(by_doc, key=lambda i: len(docs[i]))
    out: dict[tuple[int, int, str], WFSAPath] = {}
    for chunk in _chunks(wanted, docs, batch_size):
        x, mask = batch_vectors(model, [docs[i] for i in chunk])
        u, f = _weights(model, x)
        reqs = [(b, j, kind) for b, i in enumerate(chunk) for j, kind in by_doc[i]]
        dec = PathDecoder(u, f, model.wfsa.is_first, mask.transpose(0, 1))
        for (b, j, kind), path in dec.paths(reqs, anywhere).items():
            i = chunk[b]  # keep the document's own positions (drop the batch's padding)
            out[(i, j, kind)] = replace(path, states=path.states[: len(docs[i])])
    return out


def _chunks(wanted: Sequence[int], docs: Sequence[Document], batch_size: int) -> list[list[int]]:
    """``wanted`` (sorted by length) in batches of ``batch_size`` and ``DECODE_TOKENS``."""
    sub = [docs[i] for i in wanted]
    return [[wanted[k] for k in sorted(b)] for b in _batches(sub, batch_size, DECODE_TOKENS)]

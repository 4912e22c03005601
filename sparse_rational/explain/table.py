"""The paper's Table 1 and per-document explanations (see docs/DESIGN.md, 'Best paths for explanations').

For each WFSA, every training document is scored by its best single path (max-times) and
its worst (min-times), read where the model reads its scores: at the document's end for a
``"final"``-readout model (the paper's), and for a model that pools its states over the
document (``"mean"``, ``"max"``) at whichever token gives the best (worst) path: the best
*span* anywhere in the document. Every document's best and worst path is decoded; paths
that read as the same phrase (the same Table-1 cells) are merged, with the number of
documents whose best (worst) path they are; the K phrases with the highest best-path
score and the K with the lowest worst-path score are shown, one column per main-path
transition::

    column i = [self-loop tokens read in q_{i-1}] + the token of the transition q_{i-1} -> q_i

Self-loop tokens carry ``_SL`` (more than two are shown as ``..._SL``); ``</s>`` is the
end-of-document token. Self-loops read in ``q_0`` (weight 1, before the match) are not
part of the phrase; self-loops read in the last state after the last transition are shown
in a final ``after`` column. A path may end before the WFSA's last state (all states are
final); its later columns are empty.

Scoring and decoding are batched (padded batches with a mask, at most ``DECODE_TOKENS``
padded tokens per batch while the DP's history is kept); backpointers are followed for all
documents at once (:class:`~.paths.PathDecoder`).

One document (``--doc``, the HTML report): each WFSA contributes ``score_j * W[c, j]`` to
the logit of class ``c``. For a pooled model the score itself splits over the document:
``mean``: token ``t`` adds ``(1/L) sum_i c_ji(t)`` (``L`` tokens); ``max``: state ``q_i``
adds ``c_ji(t_i)`` at its argmax token ``t_i``. Each part is shown by the best path ending
there (the worst when the part is negative), and its share of class ``c``'s logit is
``W[c, j] * part``; the tokens whose paths are the same match (the same main-path
transitions) form one span, shown by the path ending at its first token. The parts of a
WFSA sum to its score.

Word vectors and contextual vectors: a :class:`Document` holds the tokens the model read
(one per position) and either ids into the model's embedding matrix or its own vectors.
A contextual encoder over word pieces gives pieces as ``tokens`` and its ``vectors``;
``words``/``word_of`` (piece -> word offsets) let the display merge pieces into words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from ..data import Example
from ..errors import ParameterError, UserError
from ..ops.reference import semiring_dp, transition_weights
from ..semiring import PLUS_TIMES
from .paths import KINDS, PathDecoder, WFSAPath, max_min_scores

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
        elif d.ids is not None and model.embeddings is not None:
            v = model.embeddings[d.ids.to(device)]
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
            scores[rows] = s.cpu().to(dtype)
            logits[rows] = model.classifier(s).cpu().to(dtype)
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


# -- phrases -----------------------------------------------------------------------------
def _short(token: str) -> str:
    return token if len(token) <= MAX_CELL else token[: MAX_CELL - 1] + "\u2026"


def self_loop_text(tokens: Sequence[str], max_shown: int = 2) -> list[str]:
    """``a_SL b_SL`` for up to ``max_shown`` (2, as the paper) self-loop tokens, ``..._SL`` for more."""
    if len(tokens) > max_shown:
        return ["..." + SL]
    return [_short(t) + SL for t in tokens]


def _column_positions(states: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pos, trans)``: the positions the path consumed (state ``>= 1``, in order) and the
    indices into ``pos`` of its main-path transitions (where the state goes up)."""
    row = np.asarray(states)
    pos = np.flatnonzero(row > 0)
    trans = np.flatnonzero(np.diff(row[pos], prepend=0) > 0)
    return pos, trans


def _column_slices(pos: np.ndarray, trans: np.ndarray, n: int) -> list[tuple[np.ndarray, int | None]]:
    """``n`` transition columns then ``after``: each ``(self-loop positions, transition
    position or None)``. Column ``i`` holds the self-loops read in ``q_i`` (``i >= 1``) and
    the transition ``q_i -> q_{i+1}``; ``after`` the self-loops after the last transition."""
    out: list[tuple[np.ndarray, int | None]] = []
    for i in range(n):
        if i < len(trans):
            out.append((pos[trans[i - 1] + 1 : trans[i]] if i >= 1 else pos[:0], int(pos[trans[i]])))
        else:
            out.append((pos[:0], None))
    out.append((pos[trans[-1] + 1 :] if len(trans) else pos[:0], None))
    return out


def phrase_cells(tokens: Sequence[str], states: Sequence[int] | np.ndarray, n: int, max_loops: int = 2) -> list[str]:
    """Table-1 cells of a path given by its ``states``: ``n`` transition columns then
    ``after`` (runs of more than ``max_loops`` self-loop tokens shown as ``..._SL``). Two
    paths with the same cells are the same phrase (merged in Table 1)."""
    out = []
    for loops, main in _column_slices(*_column_positions(states), n):
        if len(loops) > max_loops:
            text = ["..." + SL]
        else:
            text = [_short(tokens[t]) + SL for t in loops]
        if main is not None:
            text.append(_short(tokens[main]))
        out.append(" ".join(text))
    return out


@dataclass
class Phrase:
    """The words one path of a WFSA consumed in one document; ``count``: the number of
    documents whose path reads as the same phrase (merged in Table 1), this one the best."""

    doc: int
    path: WFSAPath
    tokens: list[str]  # the document's tokens
    count: int = 1

    @property
    def score(self) -> float:
        return self.path.score

    def columns(self, n: int) -> list[list[tuple[str, bool]]]:
        """``n`` transition columns and the ``after`` column: lists of ``(token, is_self_loop)``."""
        return [
            [(self.tokens[t], True) for t in loops] + ([] if main is None else [(self.tokens[main], False)])
            for loops, main in _column_slices(*_column_positions(self.path.states), n)
        ]

    def cells(self, n: int, max_loops: int = 2) -> list[str]:
        """Table-1 cells: ``n`` transition columns then ``after`` (runs of more than
        ``max_loops`` self-loop tokens shown as ``..._SL``)."""
        return phrase_cells(self.tokens, self.path.states, n, max_loops)


@dataclass
class PatternSummary:
    """One WFSA: its length, classifier weights, training score statistics and phrases."""

    wfsa: int
    length: int
    classes: list[str]
    weights: list[float]  # classifier weight of its score in each class's logit
    score_mean: float
    score_std: float
    top: list[Phrase] = field(default_factory=list)
    bottom: list[Phrase] = field(default_factory=list)

    @property
    def votes_for(self) -> str:
        """The class whose logit a high score raises most."""
        return self.classes[int(np.argmax(self.weights))]

    @property
    def votes_against(self) -> str:
        """The class a low (negative) score favours."""
        return self.classes[int(np.argmin(self.weights))]

    @property
    def strength(self) -> float:
        """Logit margin per unit of score: ``max_c W_cj - min_c W_cj``."""
        return float(max(self.weights) - min(self.weights))

    @property
    def typical_effect(self) -> float:
        """``strength * std(score)`` over the training documents: a typical logit swing."""
        return self.strength * self.score_std

    def vote_text(self) -> str:
        weights = ", ".join(f"{c} {w:+.3f}" for c, w in zip(self.classes, self.weights))
        return (
            f"high scores vote {self.votes_for}, low ones {self.votes_against} "
            f"({self.strength:.3f} logit margin per unit score; weights {weights}); "
            f"training scores mean {self.score_mean:+.3f} sd {self.score_std:.3f}"
        )


def summarize_patterns(
    clf, docs: Sequence[Document], k: int = 4, batch_size: int = 128, corpus: CorpusScores | None = None
) -> list[PatternSummary]:
    """Top-``k`` (best path, highest) and bottom-``k`` (worst path, lowest) phrases of every
    WFSA over ``docs`` (the training documents). Paths end where the model reads its
    scores: at each document's end (readout ``final``) or at any token (``mean``, ``max``).
    Documents whose paths read as the same phrase are merged into one, counted
    (:attr:`Phrase.count`), shown with the best (worst) of their scores."""
    if not docs:
        raise UserError("explain: no training documents to read the patterns from")
    if k < 1:
        raise ParameterError("top_k", f"must be >= 1, got {k}")
    model = clf.model
    if corpus is None or corpus.paths is None:
        corpus = score_documents(model, docs, batch_size, decode=True)
    paths = corpus.paths
    assert paths is not None
    W = model.classifier.weight.detach().float().cpu()
    out = []
    for j, n in enumerate(model.config.structure):
        picked: dict[str, list[Phrase]] = {}
        for b, kind in enumerate(KINDS):
            values = (corpus.best if kind == "best" else corpus.worst)[:, j].double().numpy()
            order = np.argsort(-values if kind == "best" else values, kind="stable")
            groups: dict[tuple[str, ...], list[int]] = {}  # phrase -> [first document, count]
            for i in order:
                if np.isnan(values[i]):
                    continue
                key = tuple(phrase_cells(docs[i].tokens, paths[i][j, b], n))
                groups.setdefault(key, [int(i), 0])[1] += 1
            picked[kind] = [
                Phrase(
                    i, WFSAPath(j, kind, float(values[i]), tuple(int(x) for x in paths[i][j, b])), docs[i].tokens, count
                )
                for i, count in list(groups.values())[:k]
            ]
        s = corpus.scores[:, j].float()
        out.append(
            PatternSummary(
                wfsa=j,
                length=n,
                classes=list(clf.classes),
                weights=W[:, j].tolist(),
                score_mean=float(s.mean()),
                score_std=float(s.std()) if len(s) > 1 else 0.0,
                top=picked["best"],
                bottom=picked["worst"],
            )
        )
    return out


def _grid(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def format_table(patterns: Sequence[PatternSummary]) -> str:
    """The text Table 1: per WFSA (numbered from 1) its weights and top/bottom phrases
    (``(xN)``: N documents read the same phrase)."""
    if not patterns:
        return "the model has no WFSA left: it predicts from the classifier bias alone\n"
    lines = []
    for p in patterns:
        lines.append(f"Pattern {p.wfsa + 1} ({p.length} transition{'s' if p.length > 1 else ''}): {p.vote_text()}")
        header = ["", "score"] + [f"transition_{i + 1}" for i in range(p.length)] + ["after", ""]
        rows = [header]
        for name, phrases in (("top", p.top), ("bottom", p.bottom)):
            for r, ph in enumerate(phrases):
                count = f"(x{ph.count})" if ph.count > 1 else ""
                rows.append([name if r == 0 else "", f"{ph.score:+.4g}"] + ph.cells(p.length) + [count])
        lines += _grid(rows)
        lines.append("")
    return "\n".join(lines)


# -- one document ------------------------------------------------------------------------
@dataclass
class SpanContribution:
    """One span of a pooled model's document: a part of WFSA ``wfsa``'s score.

    ``ends``: the tokens whose parts it sums (``mean``: the tokens ``t`` whose best path is
    this match, each adding ``(1/L) sum_i c_ji(t)``; ``max``: the argmax token of state
    ``q_i``, adding ``c_ji(t_i)``); ``value``: their sum; ``shares[c] = W[c, j] * value``,
    its share of class ``c``'s logit; ``phrase``: the path shown (the best path ending at
    the first of ``ends``, or the worst when its part is negative)."""

    wfsa: int
    ends: list[int]
    value: float
    shares: list[float]
    phrase: Phrase
    state: int | None = None  # max readout: the state q_i whose maximum this is


@dataclass
class WFSAContribution:
    """What one WFSA did in one document."""

    wfsa: int
    score: float  # the model's (plus-times) score
    contributions: list[float]  # score * W[c, j] for each class c
    best: Phrase
    worst: Phrase
    spans: list[SpanContribution] = field(default_factory=list)  # pooled readouts: the parts of the score


@dataclass
class DocExplanation:
    document: Document
    classes: list[str]
    logits: list[float]
    probabilities: list[float]
    bias: list[float]
    wfsas: list[WFSAContribution]  # sorted: largest contribution to the predicted class first
    readout: str = "final"

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]

    @property
    def correct(self) -> bool | None:
        if self.document.label is None:
            return None
        return self.classes[self.predicted] == self.document.label

    def top_spans(
        self, n: int = DOC_SPANS, against: int = DOC_SPANS_AGAINST
    ) -> tuple[list[SpanContribution], list[SpanContribution]]:
        """The ``n`` spans (of all WFSAs) with the largest share of the predicted class's
        logit, and the ``against`` with the most negative share (pooled readouts; empty for
        ``final``)."""
        pred = self.predicted
        spans = sorted((sp for w in self.wfsas for sp in w.spans), key=lambda sp: -sp.shares[pred])
        pos = [sp for sp in spans if sp.shares[pred] > 0][:n]
        neg = [sp for sp in reversed(spans) if sp.shares[pred] < 0][:against]
        return pos, neg


def _transitions(row: np.ndarray) -> tuple[int, ...]:
    pos, trans = _column_positions(row)
    return tuple(int(t) for t in pos[trans])


@torch.no_grad()
def _pooled_spans(
    model, docs: Sequence[Document], W: Tensor, batch_size: int = 16
) -> list[dict[int, list[SpanContribution]]]:
    """Per document and WFSA, the parts of a pooled model's scores (module doc), merged
    into spans, largest share of the predicted class first (sorted later)."""
    readout = model.config.readout
    out: list[dict[int, list[SpanContribution]]] = [{} for _ in docs]
    Wn = W.double().numpy()
    for chunk in _chunks(list(range(len(docs))), docs, batch_size):
        x, mask = batch_vectors(model, [docs[i] for i in chunk])
        u, f = _weights(model, x)
        m = mask.transpose(0, 1)
        dec = PathDecoder(u, f, model.wfsa.is_first, m)
        _, history = semiring_dp(u, f, model.wfsa.is_first, m, PLUS_TIMES, return_all=True)
        c = torch.stack([h for (h,) in history]).cpu().double().numpy()  # [T, B, N]
        for b, i in enumerate(chunk):
            real = np.flatnonzero(dec.mask[:, b])
            L = len(real)
            # (j, kind, end, local state, part, q_i of a max part)
            items: list[tuple[int, str, int, int, float, int | None]] = []
            for j, (start, n) in enumerate(dec.slices):
                cj = c[real, b, start : start + n]  # [L, n]
                if readout == "mean":
                    parts = cj.sum(1) / max(L, 1)
                    for pos, part in zip(real.tolist(), parts.tolist()):
                        kind = "best" if part >= 0 else "worst"
                        block = (dec.hi if kind == "best" else dec.lo)[pos, b, start : start + n]
                        k = int(np.argmax(block) if kind == "best" else np.argmin(block)) + 1
                        items.append((j, kind, pos, k, part, None))
                else:  # max: per state, its first maximum over the real tokens (as the model reads it)
                    for k in range(1, n + 1):
                        if not L:
                            break
                        a = int(np.argmax(cj[:, k - 1]))
                        pos, part = int(real[a]), float(cj[a, k - 1])
                        if dec.hi[pos, b, start + k - 1] < dec.lo[pos, b, start + k - 1]:
                            continue  # q_k not reachable there: c = 0, no path to show
                        items.append((j, "best" if part >= 0 else "worst", pos, k, part, k))
            if not items:
                continue
            traced = dec.trace(
                [b] * len(items),
                [it[0] for it in items],
                [it[1] for it in items],
                [it[2] for it in items],
                [it[3] for it in items],
            )
            groups: dict[tuple, list[int]] = {}
            for r, (j, kind, *_rest) in enumerate(items):
                groups.setdefault((j, kind, _transitions(traced[r])), []).append(r)
            doc = docs[i]
            for (j, kind, _), members in groups.items():
                rep = min(members, key=lambda r: items[r][2])  # the match itself: its earliest end
                _, _, pos, k, _, state = items[rep]
                start = dec.slices[j][0]
                score = float((dec.hi if kind == "best" else dec.lo)[pos, b, start + k - 1])
                path = WFSAPath(j, kind, score, tuple(int(s) for s in traced[rep, : len(doc)]))
                value = float(sum(items[r][4] for r in members))
                out[i].setdefault(j, []).append(
                    SpanContribution(
                        j,
                        sorted(items[r][2] for r in members),
                        value,
                        (Wn[:, j] * value).tolist(),
                        Phrase(i, path, doc.tokens),
                        state,
                    )
                )
    return out


@torch.no_grad()
def explain_documents(clf, docs: Sequence[Document], corpus: CorpusScores | None = None) -> list[DocExplanation]:
    """Prediction, per-WFSA contributions and best/worst paths of each document; for a
    pooled model also the spans each WFSA's score is made of (module doc)."""
    model = clf.model
    corpus = corpus or score_documents(model, docs)
    d = model.wfsa.num_wfsas
    paths = (
        decode_documents(
            model, docs, [(i, j, k) for i in range(len(docs)) for j in range(d) for k in ("best", "worst")]
        )
        if d
        else {}
    )
    W = model.classifier.weight.detach().cpu()  # float32 for a float32 model (all numbers in its precision)
    spans = _pooled_spans(model, docs, W) if d and pooled(model) else None
    bias = model.classifier.bias.detach().cpu().tolist()
    out = []
    for i, doc in enumerate(docs):
        logits = corpus.logits[i]
        pred = int(logits.argmax())
        items = [
            WFSAContribution(
                j,
                float(corpus.scores[i, j]),
                (corpus.scores[i, j] * W[:, j]).tolist(),
                Phrase(i, paths[(i, j, "best")], doc.tokens),
                Phrase(i, paths[(i, j, "worst")], doc.tokens),
                sorted(spans[i].get(j, []), key=lambda sp: -sp.shares[pred]) if spans else [],
            )
            for j in range(d)
        ]
        items.sort(key=lambda c: -c.contributions[pred])
        out.append(
            DocExplanation(
                doc,
                list(clf.classes),
                logits.tolist(),
                torch.softmax(logits, -1).tolist(),
                bias,
                items,
                getattr(model.config, "readout", "final"),
            )
        )
    return out


def _phrase_text(ph: Phrase, n: int) -> str:
    cells = ph.cells(n, max_loops=DOC_MAX_LOOPS)
    after = cells.pop()
    main = " | ".join(c for c in cells if c)
    return main + (f"  (then {after})" if after else "")


def positions_text(ends: Sequence[int]) -> str:
    """Token positions as runs: ``3-7,12``."""
    runs: list[list[int]] = []
    for t in ends:
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def readout_text(readout: str, length: int) -> str:
    """One line: how a pooled model's WFSA score splits into the parts shown."""
    if readout == "mean":
        return (
            f"mean readout: a WFSA's score is the mean over the L = {length} tokens t of sum_i c_i(t); "
            f"token t adds "
            f"(1/L) sum_i c_i(t); tokens whose best paths (the worst where negative) are the same match form one "
            f"span, shown by its path ending at the first of them; share of a logit = part * weight"
        )
    return (
        "max readout: a WFSA's score is sum_i max_t c_i(t); state q_i adds c_i(t_i) at its argmax token t_i, "
        "shown by the best path into q_i ending at t_i (the worst where negative); "
        "share of a logit = part * weight"
    )


def format_explanation(exp: DocExplanation, structure: Sequence[int]) -> str:
    """The ``--doc`` text: the prediction, then each WFSA's contribution, largest first; for
    a pooled model then the spans with the largest shares of the predicted class's logit."""
    classes = exp.classes
    pred = exp.predicted
    probs = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, exp.probabilities))
    lines = [f"prediction: {classes[pred]} (probabilities: {probs})"]
    if exp.document.label is not None:
        lines[0] += f"; gold label {exp.document.label}"
    lines.append("logit = bias + sum over WFSAs of score * weight:")
    for c, name in enumerate(classes):
        total = sum(w.contributions[c] for w in exp.wfsas)
        lines.append(f"  {name}: {exp.logits[c]:+.4f} = bias {exp.bias[c]:+.4f} + contributions {total:+.4f}")
    if not exp.wfsas:
        lines.append("(no WFSA: the prediction is the bias alone)")
        return "\n".join(lines) + "\n"
    lines.append(f"WFSAs, largest contribution to {classes[pred]} first:")
    is_pooled = exp.readout != "final"
    where = "best span (anywhere)" if is_pooled else "best path consumed"
    rows = [["pattern", "score"] + [f"to {c}" for c in classes] + [where]]
    for w in exp.wfsas:
        n = structure[w.wfsa]
        rows.append(
            [str(w.wfsa + 1), f"{w.score:+.4f}"]
            + [f"{x:+.4f}" for x in w.contributions]
            + [f"{_phrase_text(w.best, n)}  [{w.best.score:+.4g}]"]
        )
        rows.append(["", "", *[""] * len(classes), f"worst: {_phrase_text(w.worst, n)}  [{w.worst.score:+.4g}]"])
    lines += _grid(rows)
    if is_pooled:
        lines.append(readout_text(exp.readout, len(exp.document.tokens)))
        lines.append("tokens: " + " ".join(f"{t}:{tok}" for t, tok in enumerate(exp.document.tokens)))
        pos, neg = exp.top_spans()
        for title, spans in (
            (f"spans that add most to {classes[pred]}:", pos),
            (f"spans that take most from {classes[pred]}:", neg),
        ):
            if not spans:
                continue
            lines.append(title)
            rows = [["pattern", "tokens", "part"] + [f"to {c}" for c in classes] + ["span"]]
            for sp in spans:
                label = str(sp.wfsa + 1) + (f" q{sp.state}" if sp.state is not None else "")
                rows.append(
                    [label, positions_text(sp.ends), f"{sp.value:+.4f}"]
                    + [f"{x:+.4f}" for x in sp.shares]
                    + [f"{_phrase_text(sp.phrase, structure[sp.wfsa])}  [{sp.phrase.score:+.4g}]"]
                )
            lines += _grid(rows)
    return "\n".join(lines) + "\n"

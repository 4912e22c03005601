"""The paper's Table 1 and per-document explanations (see docs/DESIGN.md, 'Best paths for explanations').

For each WFSA, every training document is scored by its best single path (max-times) and
its worst (min-times), read at the document's end as the model reads its scores; the K
documents with the highest best-path score and the K with the lowest worst-path score are
shown as phrases, one column per main-path transition::

    column i = [self-loop tokens read in q_{i-1}] + the token of the transition q_{i-1} -> q_i

Self-loop tokens carry ``_SL`` (more than two are shown as ``..._SL``); ``</s>`` is the
end-of-document token. Self-loops read in ``q_0`` (weight 1, before the match) are not
part of the phrase; self-loops read in the last state after the last transition are shown
in a final ``after`` column. A path may end before the WFSA's last state (all states are
final); its later columns are empty.

Scoring is batched (padded batches with a mask, no history kept); backpointers are
followed only for the documents that are shown.

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
from ..ops.reference import transition_weights
from .paths import WFSAPath, decode_paths, max_min_scores

SL = "_SL"
MAX_CELL = 40
DOC_MAX_LOOPS = 6  # --doc shows self-loop runs of up to 6 words in full


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
    x = torch.zeros(len(docs), T, e, device=device)
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


def _batches(docs: Sequence[Document], batch_size: int) -> list[np.ndarray]:
    order = np.argsort([len(d) for d in docs], kind="stable")  # little padding
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# -- scoring a corpus --------------------------------------------------------------------
@dataclass
class CorpusScores:
    """Per document: best/worst path score ``[n, d]``, the model's (plus-times) WFSA
    scores ``[n, d]`` and logits ``[n, C]``."""

    best: Tensor
    worst: Tensor
    scores: Tensor
    logits: Tensor


@torch.no_grad()
def score_documents(model, docs: Sequence[Document], batch_size: int = 128) -> CorpusScores:
    """Score every document (batched, sorted by length, no history kept)."""
    was_training = model.training
    model.eval()
    n, d, C = len(docs), model.wfsa.num_wfsas, model.config.num_classes
    best, worst = torch.zeros(n, d), torch.zeros(n, d)
    scores, logits = torch.zeros(n, d), torch.zeros(n, C)
    try:
        for idx in _batches(docs, batch_size):
            x, mask = batch_vectors(model, [docs[i] for i in idx])
            rows = torch.as_tensor(idx)
            s = model.scores(x, mask)
            scores[rows] = s.float().cpu()
            logits[rows] = model.classifier(s).float().cpu()
            if d:
                u, f = _weights(model, x)
                b_, w_ = max_min_scores(u, f, model.wfsa.is_first, model.wfsa.owner, mask.transpose(0, 1))
                best[rows], worst[rows] = b_.float().cpu(), w_.float().cpu()
    finally:
        model.train(was_training)
    return CorpusScores(best, worst, scores, logits)


@torch.no_grad()
def decode_documents(
    model, docs: Sequence[Document], requests: Sequence[tuple[int, int, str]], batch_size: int = 32
) -> dict[tuple[int, int, str], WFSAPath]:
    """Paths ``{(doc, wfsa, kind): WFSAPath}`` for the requested documents only."""
    by_doc: dict[int, list[tuple[int, str]]] = {}
    for i, j, kind in requests:
        by_doc.setdefault(i, []).append((j, kind))
    wanted = sorted(by_doc, key=lambda i: len(docs[i]))
    out: dict[tuple[int, int, str], WFSAPath] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        x, mask = batch_vectors(model, [docs[i] for i in chunk])
        u, f = _weights(model, x)
        reqs = [(b, j, kind) for b, i in enumerate(chunk) for j, kind in by_doc[i]]
        for (b, j, kind), path in decode_paths(u, f, model.wfsa.is_first, mask.transpose(0, 1), reqs).items():
            i = chunk[b]  # keep the document's own positions (drop the batch's padding)
            out[(i, j, kind)] = replace(path, states=path.states[: len(docs[i])])
    return out


# -- phrases -----------------------------------------------------------------------------
def _short(token: str) -> str:
    return token if len(token) <= MAX_CELL else token[: MAX_CELL - 1] + "\u2026"


def self_loop_text(tokens: Sequence[str], max_shown: int = 2) -> list[str]:
    """``a_SL b_SL`` for up to ``max_shown`` (2, as the paper) self-loop tokens, ``..._SL`` for more."""
    if len(tokens) > max_shown:
        return ["..." + SL]
    return [_short(t) + SL for t in tokens]


@dataclass
class Phrase:
    """The words one path of a WFSA consumed in one document."""

    doc: int
    path: WFSAPath
    tokens: list[str]  # the document's tokens

    @property
    def score(self) -> float:
        return self.path.score

    def columns(self, n: int) -> list[list[tuple[str, bool]]]:
        """``n`` transition columns and the ``after`` column: lists of ``(token, is_self_loop)``."""
        trans = self.path.transitions()
        loops = self.path.self_loops()
        cols: list[list[tuple[str, bool]]] = []
        for i in range(n):
            if i < len(trans):
                pre = [self.tokens[t] for t in loops[i]] if i >= 1 else []
                cols.append([(t, True) for t in pre] + [(self.tokens[trans[i]], False)])
            else:
                cols.append([])
        cols.append([(self.tokens[t], True) for t in loops[len(trans)]] if trans else [])
        return cols

    def cells(self, n: int, max_loops: int = 2) -> list[str]:
        """Table-1 cells: ``n`` transition columns then ``after`` (runs of more than
        ``max_loops`` self-loop tokens shown as ``..._SL``)."""
        out = []
        for col in self.columns(n):
            loops = [t for t, sl in col if sl]
            main = [_short(t) for t, sl in col if not sl]
            out.append(" ".join(self_loop_text(loops, max_loops) + main))
        return out


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
        return (f"high scores vote {self.votes_for}, low ones {self.votes_against} "
                f"({self.strength:.3f} logit margin per unit score; weights {weights}); "
                f"training scores mean {self.score_mean:+.3f} sd {self.score_std:.3f}")


def summarize_patterns(clf, docs: Sequence[Document], k: int = 4, batch_size: int = 128,
                       corpus: CorpusScores | None = None) -> list[PatternSummary]:
    """Top-``k`` (best path, highest) and bottom-``k`` (worst path, lowest) phrases of every
    WFSA over ``docs`` (the training documents)."""
    if not docs:
        raise UserError("explain: no training documents to read the patterns from")
    if k < 1:
        raise ParameterError("top_k", f"must be >= 1, got {k}")
    model = clf.model
    corpus = corpus or score_documents(model, docs, batch_size)
    k = min(k, len(docs))
    W = model.classifier.weight.detach().float().cpu()
    requests: list[tuple[int, int, str]] = []
    picks: list[tuple[list[int], list[int]]] = []
    for j in range(model.wfsa.num_wfsas):
        top = torch.topk(corpus.best[:, j], k).indices.tolist()
        bottom = torch.topk(corpus.worst[:, j], k, largest=False).indices.tolist()
        picks.append((top, bottom))
        requests += [(i, j, "best") for i in top] + [(i, j, "worst") for i in bottom]
    paths = decode_documents(model, docs, requests)
    out = []
    for j, (n, (top, bottom)) in enumerate(zip(model.config.structure, picks)):
        s = corpus.scores[:, j]
        out.append(PatternSummary(
            wfsa=j, length=n, classes=list(clf.classes), weights=W[:, j].tolist(),
            score_mean=float(s.mean()), score_std=float(s.std()) if len(s) > 1 else 0.0,
            top=[Phrase(i, paths[(i, j, "best")], docs[i].tokens) for i in top],
            bottom=[Phrase(i, paths[(i, j, "worst")], docs[i].tokens) for i in bottom],
        ))
    return out


def _grid(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def format_table(patterns: Sequence[PatternSummary]) -> str:
    """The text Table 1: per WFSA (numbered from 1) its weights and top/bottom phrases."""
    if not patterns:
        return "the model has no WFSA left: it predicts from the classifier bias alone\n"
    lines = []
    for p in patterns:
        lines.append(f"Pattern {p.wfsa + 1} ({p.length} transition{'s' if p.length > 1 else ''}): {p.vote_text()}")
        header = ["", "score"] + [f"transition_{i + 1}" for i in range(p.length)] + ["after"]
        rows = [header]
        for name, phrases in (("top", p.top), ("bottom", p.bottom)):
            for r, ph in enumerate(phrases):
                rows.append([name if r == 0 else "", f"{ph.score:+.4g}"] + ph.cells(p.length))
        lines += _grid(rows)
        lines.append("")
    return "\n".join(lines)


# -- one document ------------------------------------------------------------------------
@dataclass
class WFSAContribution:
    """What one WFSA did in one document."""

    wfsa: int
    score: float  # the model's (plus-times) score
    contributions: list[float]  # score * W[c, j] for each class c
    best: Phrase
    worst: Phrase


@dataclass
class DocExplanation:
    document: Document
    classes: list[str]
    logits: list[float]
    probabilities: list[float]
    bias: list[float]
    wfsas: list[WFSAContribution]  # sorted: largest contribution to the predicted class first

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


@torch.no_grad()
def explain_documents(clf, docs: Sequence[Document], corpus: CorpusScores | None = None) -> list[DocExplanation]:
    """Prediction, per-WFSA contributions and best/worst paths of each document."""
    model = clf.model
    corpus = corpus or score_documents(model, docs)
    d = model.wfsa.num_wfsas
    paths = decode_documents(model, docs, [(i, j, k) for i in range(len(docs)) for j in range(d)
                                           for k in ("best", "worst")]) if d else {}
    W = model.classifier.weight.detach().float().cpu()
    bias = model.classifier.bias.detach().float().cpu().tolist()
    out = []
    for i, doc in enumerate(docs):
        logits = corpus.logits[i]
        pred = int(logits.argmax())
        items = [
            WFSAContribution(j, float(corpus.scores[i, j]), (corpus.scores[i, j] * W[:, j]).tolist(),
                             Phrase(i, paths[(i, j, "best")], doc.tokens), Phrase(i, paths[(i, j, "worst")], doc.tokens))
            for j in range(d)
        ]
        items.sort(key=lambda c: -c.contributions[pred])
        out.append(DocExplanation(doc, list(clf.classes), logits.tolist(), torch.softmax(logits, -1).tolist(),
                                  bias, items))
    return out


def _phrase_text(ph: Phrase, n: int) -> str:
    cells = ph.cells(n, max_loops=DOC_MAX_LOOPS)
    after = cells.pop()
    main = " | ".join(c for c in cells if c)
    return main + (f"  (then {after})" if after else "")


def format_explanation(exp: DocExplanation, structure: Sequence[int]) -> str:
    """The ``--doc`` text: the prediction, then each WFSA's contribution, largest first."""
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
    rows = [["pattern", "score"] + [f"to {c}" for c in classes] + ["best path consumed"]]
    for w in exp.wfsas:
        n = structure[w.wfsa]
        rows.append([str(w.wfsa + 1), f"{w.score:+.4f}"] + [f"{x:+.4f}" for x in w.contributions]
                    + [f"{_phrase_text(w.best, n)}  [{w.best.score:+.4g}]"])
        rows.append(["", "", *[""] * len(classes), f"worst: {_phrase_text(w.worst, n)}  [{w.worst.score:+.4g}]"])
    lines += _grid(rows)
    return "\n".join(lines) + "\n"

"""One document explained: what each WFSA (and, for pooled readouts, each span) adds to the
logits (see :mod:`.table`)."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..ops.reference import semiring_dp
from ..semiring import PLUS_TIMES
from .documents import (
    DOC_MAX_LOOPS,
    DOC_SPANS,
    DOC_SPANS_AGAINST,
    CorpusScores,
    Document,
    _chunks,
    _weights,
    batch_vectors,
    decode_documents,
    pooled,
    score_documents,
)
from .paths import PathDecoder, WFSAPath
from .phrases import (
    Phrase,
    _column_positions,
    _grid,
)


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

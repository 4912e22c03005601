"""The paper's Table 1: each WFSA's top and bottom phrases over the training documents, merged
with their counts (see :mod:`.table`)."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ParameterError, UserError
from .documents import (
    MAX_CELL,
    SL,
    CorpusScores,
    Document,
    score_documents,
)
from .paths import KINDS, WFSAPath


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
        if any(np.isnan(self.weights)):  # the first layer of a stacked model: no classifier weight
            return (
                f"first layer, left to right (its per-step scores feed the layer above); "
                f"training scores mean {self.score_mean:+.3f} sd {self.score_std:.3f}"
            )
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
    if model.config.deep:  # the first layer feeds the layer above, not the classifier
        W = torch.full((len(clf.classes), len(model.config.structure)), float("nan"))
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

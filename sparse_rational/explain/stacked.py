"""Stacked and bidirectional models explained: the top layer's contributions to the logits.

The paper's Table 1 reads the first layer's left-to-right WFSAs (:mod:`.phrases`); what a
document's prediction is made of is the top layer's scores, each times its classifier
weights: ``logit_c = bias_c + sum_j W_cj s_j`` over the top layer's WFSAs ``j`` (forward,
then backward). A top-layer WFSA reads the per-step scores of the layer below, not words,
so it has no phrases to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .documents import Document, batch_vectors
from .phrases import _grid


@dataclass
class TopContribution:
    direction: str  # "forward" or "backward"
    index: int  # the WFSA's number within its direction (from 0)
    length: int
    score: float
    contributions: list[float]  # score * W[c, j] for each class c


@dataclass
class StackedExplanation:
    doc: Document
    classes: list[str]
    logits: list[float]
    probabilities: list[float]
    bias: list[float]
    top_layer: int  # numbered from 1
    items: list[TopContribution]  # sorted by their contribution to the predicted class

    @property
    def predicted(self) -> int:
        return max(range(len(self.logits)), key=lambda c: self.logits[c])


@torch.no_grad()
def explain_stacked(clf, docs: Sequence[Document]) -> list[StackedExplanation]:
    """The top layer's contributions to each document's logits."""
    model = clf.model
    was_training = model.training
    model.eval()
    try:
        cfg = model.config
        labels = [(d, j, n) for d, s in zip(cfg.directions, cfg.structures[-1]) for j, n in enumerate(s)]
        W = model.classifier.weight.detach().double().cpu()
        bias = model.classifier.bias.detach().double().cpu().tolist()
        out = []
        for doc in docs:
            x, mask = batch_vectors(model, [doc])
            s = model.scores(x, mask)
            logits = model.classifier(s)[0].double().cpu()
            scores = s[0].double().cpu()
            items = [
                TopContribution(d, j, n, float(scores[k]), (scores[k] * W[:, k]).tolist())
                for k, (d, j, n) in enumerate(labels)
            ]
            pred = int(logits.argmax())
            items.sort(key=lambda it: -it.contributions[pred])
            out.append(
                StackedExplanation(
                    doc,
                    list(clf.classes),
                    logits.tolist(),
                    torch.softmax(logits, -1).tolist(),
                    bias,
                    cfg.layers,
                    items,
                )
            )
        return out
    finally:
        model.train(was_training)


def format_stacked_explanation(exp: StackedExplanation) -> str:
    pred = exp.predicted
    lines = [
        f"Document: {' '.join(exp.doc.tokens)}",
        f"Prediction: {exp.classes[pred]} (p = {exp.probabilities[pred]:.3f}); logits "
        + ", ".join(f"{c} {v:+.4f}" for c, v in zip(exp.classes, exp.logits))
        + "; bias "
        + ", ".join(f"{c} {v:+.4f}" for c, v in zip(exp.classes, exp.bias)),
        f"Top layer (layer {exp.top_layer}): each WFSA's score times its classifier weights",
    ]
    if not exp.items:
        lines.append("  the model has no WFSA left: it predicts from the classifier bias alone")
        return "\n".join(lines) + "\n"
    rows = [["WFSA", "length", "score"] + [f"-> {c}" for c in exp.classes]]
    for it in exp.items:
        rows.append(
            [f"{it.direction} {it.index + 1}", str(it.length), f"{it.score:+.4f}"]
            + [f"{v:+.4f}" for v in it.contributions]
        )
    return "\n".join(lines + _grid(rows)) + "\n"


__all__ = ["StackedExplanation", "TopContribution", "explain_stacked", "format_stacked_explanation"]

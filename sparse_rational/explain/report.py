"""One self-contained HTML file that shows the whole model (see docs/DESIGN.md, 'Best paths for explanations').

Contents: the model's structure and metrics; each WFSA as a small inline SVG chain
automaton ``q0 -> q1 -> .. -> qn`` (self-loops on ``q1..qn``, all of them final) with its
top and bottom phrases (as in Table 1, with the number of documents each merged phrase
stands for) and its classifier weights; and the dev documents the model got right and
wrong with the most confidence, with each pattern's contribution to each class's logit and
highlighted words: for a ``final``-readout model the words each pattern's best path
matched; for a pooled model (``mean``, ``max``) the spans with the largest shares of the
predicted class's logit, for it and against it (see :mod:`.table`).

Self-contained: inline CSS, no script, no external resource of any kind (no CDN, no font,
no link). Every piece of text goes through jinja2's autoescaping; on top of that any ``//``
in the data (a URL inside a review, a file path) is written as ``/&#47;`` so that the file
holds no URL reference at all (browsers show the same text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import jinja2
import torch

from ..structure import format_structure
from .table import (
    DocExplanation,
    Document,
    PatternSummary,
    Phrase,
    SpanContribution,
    explain_documents,
    positions_text,
    readout_text,
    score_documents,
    self_loop_text,
)

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
LIGHT = ["#c6dbef", "#f8c4c4", "#c7e9c0", "#dadaeb", "#fdd0a2", "#e0cfc8", "#f7cde8", "#c2eef3"]

_METRIC_KEYS = [
    ("dev_accuracy", "dev accuracy"),
    ("test_accuracy", "test accuracy"),
    ("reg_strength", "group-lasso lambda"),
    ("transitions_before_pruning", "transitions before pruning"),
    ("embeddings", "embeddings"),
    ("train_size", "training documents"),
    ("epochs", "epochs"),
    ("train_seconds", "training seconds"),
]


def _jinja():
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _fmt(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else str(x)
    if isinstance(x, (list, tuple)):
        return ", ".join(_fmt(v) for v in x)
    return str(x)


def _color(j: int) -> tuple[str, str]:
    return PALETTE[j % len(PALETTE)], LIGHT[j % len(LIGHT)]


def _short(token: str, n: int = 12) -> str:
    return token if len(token) <= n else token[: n - 1] + "\u2026"


def automaton_svg(n: int, labels: Sequence[str]) -> dict:
    """Geometry of the chain automaton ``q0 -> .. -> qn`` for the template (no markup here).

    ``labels[i]``: the text on the transition ``q_i -> q_{i+1}`` (e.g. its top token).
    """
    gap, r, y = 84, 15, 52
    xs = [28 + r + gap * i for i in range(n + 1)]
    nodes = [{"x": x, "label": f"q{i}", "final": i > 0} for i, x in enumerate(xs)]
    edges = [
        {
            "x1": xs[i] + r,
            "x2": xs[i + 1] - r - 2,
            "xm": (xs[i] + xs[i + 1]) / 2,
            "label": _short(labels[i]) if i < len(labels) else "",
        }
        for i in range(n)
    ]
    loops = [{"x": x} for x in xs[1:]]
    return {
        "width": xs[-1] + r + 16,
        "height": y + r + 14,
        "y": y,
        "r": r,
        "nodes": nodes,
        "edges": edges,
        "loops": loops,
        "start_x": xs[0] - r - 22,
    }


def _phrase_view(ph: Phrase, n: int) -> dict:
    cols = []
    for col in ph.columns(n):
        loops = [t for t, sl in col if sl]
        main = [t for t, sl in col if not sl]
        full = " ".join(loops[:60]) + (" \u2026" if len(loops) > 60 else "")
        cols.append({"loops": self_loop_text(loops), "main": main, "full": full})
    return {"score": f"{ph.score:+.4g}", "doc": ph.doc + 1, "cols": cols[:-1], "after": cols[-1], "count": ph.count}


def pattern_view(p: PatternSummary) -> dict:
    color, light = _color(p.wfsa)
    labels = []
    if p.top:
        trans = p.top[0].path.transitions()
        labels = [p.top[0].tokens[t] for t in trans]
    return {
        "number": p.wfsa + 1,
        "length": p.length,
        "color": color,
        "light": light,
        "svg": automaton_svg(p.length, labels),
        "svg_id": f"arrow{p.wfsa + 1}",
        "votes_for": p.votes_for,
        "votes_against": p.votes_against,
        "strength": f"{p.strength:.3f}",
        "typical": f"{p.typical_effect:.3f}",
        "weights": [(c, f"{w:+.3f}") for c, w in zip(p.classes, p.weights)],
        "score_mean": f"{p.score_mean:+.3f}",
        "score_std": f"{p.score_std:.3f}",
        "top": [_phrase_view(ph, p.length) for ph in p.top],
        "bottom": [_phrase_view(ph, p.length) for ph in p.bottom],
    }


def _mark_path(marks: list[list[str]], roles: list[list[tuple[int, bool]]], path, wfsa: int, what: str) -> None:
    for i, t in enumerate(path.transitions()):
        marks[t].append(f"{what}: transition {i + 1}")
        roles[t].append((wfsa, True))
    for i, loop in enumerate(path.self_loops()[1:], start=1):
        for t in loop:
            marks[t].append(f"{what}: self-loop in q{i}")
            roles[t].append((wfsa, False))


def _span_view(sp: SpanContribution, n: int, classes: Sequence[str]) -> dict:
    words = " ".join(sp.phrase.tokens[t] for t in sp.ends[:60]) + (" \u2026" if len(sp.ends) > 60 else "")
    return {
        "number": sp.wfsa + 1,
        "state": sp.state,
        "tokens": positions_text(sp.ends),
        "words": words,
        "value": f"{sp.value:+.4f}",
        "shares": [f"{x:+.4f}" for x in sp.shares],
        "phrase": _phrase_view(sp.phrase, n),
        "color": _color(sp.wfsa)[0],
    }


def document_view(exp: DocExplanation, structure: Sequence[int]) -> dict:
    """Tokens with highlight styles and the per-pattern contribution table. Highlighted: each
    pattern's best path (``final`` readout), or the spans with the largest shares of the
    predicted class's logit (pooled readouts; the spans against it outlined, dashed)."""
    tokens = exp.document.tokens
    classes = exp.classes
    pred = exp.predicted
    is_pooled = exp.readout != "final"
    marks: list[list[str]] = [[] for _ in tokens]
    roles: list[list[tuple[int, bool]]] = [[] for _ in tokens]  # (wfsa, is_transition)
    against: set[int] = set()
    spans_for: list[SpanContribution] = []
    spans_against: list[SpanContribution] = []
    if is_pooled:
        spans_for, spans_against = exp.top_spans()
        for sp in spans_for + spans_against:
            what = (
                f"pattern {sp.wfsa + 1}{f' q{sp.state}' if sp.state is not None else ''}, tokens "
                f"{positions_text(sp.ends)}: {sp.shares[pred]:+.4f} to {classes[pred]}"
            )
            _mark_path(marks, roles, sp.phrase.path, sp.wfsa, what)
            if sp.shares[pred] < 0:
                against.update(sp.phrase.path.consumed())
    else:
        for w in exp.wfsas:
            _mark_path(marks, roles, w.best.path, w.wfsa, f"pattern {w.wfsa + 1}")
    words = []
    for t, (tok, role, mark) in enumerate(zip(tokens, roles, marks)):
        styles, shadows = [], []
        trans = [j for j, is_t in role if is_t]
        if trans:
            styles.append(f"background:{_color(trans[0])[1]}")
            styles.append("font-weight:bold")
        for depth, (j, _) in enumerate(role):
            shadows.append(f"inset 0 -{2 + 2 * depth}px {_color(j)[0]}")
        if shadows:
            styles.append("box-shadow:" + ",".join(reversed(shadows)))
        if t in against:
            styles.append("outline:1px dashed #b22")
        words.append({"text": tok, "style": ";".join(styles), "title": "; ".join(mark)})
    rows = []
    for w in exp.wfsas:
        color, light = _color(w.wfsa)
        n = structure[w.wfsa]
        rows.append(
            {
                "number": w.wfsa + 1,
                "color": color,
                "light": light,
                "score": f"{w.score:+.4f}",
                "contributions": [f"{x:+.4f}" for x in w.contributions],
                "best": _phrase_view(w.best, n),
                "worst": _phrase_view(w.worst, n),
                "spans": [_span_view(sp, n, classes) for sp in w.spans[:3]],
            }
        )
    return {
        "label": exp.document.label,
        "predicted": classes[pred],
        "confidence": f"{exp.confidence:.3f}",
        "correct": exp.correct,
        "words": words,
        "rows": rows,
        "logits": [f"{x:+.4f}" for x in exp.logits],
        "bias": [f"{x:+.4f}" for x in exp.bias],
        "classes": classes,
        "pooled": is_pooled,
        "readout": readout_text(exp.readout, len(tokens)) if is_pooled else "",
        "spans_for": [_span_view(sp, structure[sp.wfsa], classes) for sp in spans_for],
        "spans_against": [_span_view(sp, structure[sp.wfsa], classes) for sp in spans_against],
    }


def select_examples(clf, docs: Sequence[Document], n: int = 5) -> tuple[list[int], list[int], float | None]:
    """The ``n`` most confident right and the ``n`` most confident wrong predictions
    (indices into ``docs``, most confident first), and the accuracy on ``docs``."""
    labelled = [i for i, d in enumerate(docs) if d.label is not None]
    if not labelled:
        return [], [], None
    corpus = score_documents(clf.model, docs)
    probs = torch.softmax(corpus.logits, -1)
    conf, pred = probs.max(-1)
    index = {c: k for k, c in enumerate(clf.classes)}
    right = [i for i in labelled if index.get(docs[i].label, -1) == int(pred[i])]
    wrong = [i for i in labelled if index.get(docs[i].label, -1) != int(pred[i])]
    right.sort(key=lambda i: -float(conf[i]))
    wrong.sort(key=lambda i: -float(conf[i]))
    return right[:n], wrong[:n], len(right) / len(labelled)


def _metrics_view(clf, dev_accuracy: float | None, n_dev: int) -> tuple[list, list]:
    m = clf.metrics or {}
    cfg = clf.model.config
    main = [
        ("structure", format_structure(cfg.structure) if cfg.structure else "(no WFSA left)"),
        ("WFSAs", str(len(cfg.structure))),
        ("lengths of patterns 1..d", ", ".join(map(str, cfg.structure)) or "-"),
        ("main-path transitions", str(cfg.transitions)),
        ("readout", getattr(cfg, "readout", "final")),
        ("parameters", str(clf.model.num_parameters())),
        ("classes", ", ".join(clf.classes)),
    ]
    for key, name in _METRIC_KEYS:
        if m.get(key) is not None:
            main.append((name, _fmt(m[key])))
    if dev_accuracy is not None:
        main.append((f"accuracy on the {n_dev} dev documents (examples below)", f"{dev_accuracy:.4f}"))
    extra = [
        (k, _fmt(v))
        for k, v in sorted(m.items())
        if isinstance(v, (int, float, str, bool))
        or (isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))
    ]
    return main, extra


def render_report(
    clf,
    patterns: Sequence[PatternSummary],
    dev_docs: Sequence[Document] = (),
    examples: int = 5,
    title: str = "sparse-rational model",
    source: str = "",
) -> str:
    """The HTML text of the report (see the module doc)."""
    env = _jinja()
    right, wrong, dev_acc = select_examples(clf, dev_docs, examples)
    chosen = right + wrong
    explained = explain_documents(clf, [dev_docs[i] for i in chosen]) if chosen else []
    structure = clf.model.config.structure
    views = [document_view(e, structure) for e in explained]
    main, extra = _metrics_view(clf, dev_acc, len(dev_docs))
    text = env.get_template(TEMPLATE).render(
        title=title,
        source=source,
        metrics=main,
        extra_metrics=extra,
        patterns=[pattern_view(p) for p in patterns],
        right=views[: len(right)],
        wrong=views[len(right) :],
        classes=list(clf.classes),
        has_dev=bool(dev_docs),
        top_k=max((len(p.top) for p in patterns), default=0),
        readout=getattr(clf.model.config, "readout", "final"),
    )
    return neutralize_urls(text)


def neutralize_urls(text: str) -> str:
    """Write every ``//`` as ``/&#47;``: the same text on screen, no URL reference in the file.

    Only valid for text and attribute values (where character references are decoded);
    the template's own CSS and markup hold no ``//``.
    """
    return text.replace("//", "/&#47;")

"""The interactive page: one self-contained HTML file (jinja2 template ``templates/demo.html.j2``).

Two modes, one page:

* ``embedded`` (``sparse-rational demo``): the whole model is in the file
  (:func:`~.payload.model_payload`, float32 in base64) and ``static/scorer.js`` scores it in
  the browser: the library's tokenizer, the WFSAs' recurrence with the model's readout, the
  classifier, and each WFSA's best and worst path (the interval DP and backpointers of
  :mod:`sparse_rational.explain.paths`). A Content-Security-Policy of ``default-src 'none'``
  makes the browser refuse any network request; the file holds no URL. Static word vectors
  only.
* ``api`` (``GET /`` of ``sparse-rational serve``): the same page without the model; it
  scores through the server's ``POST explain`` (so transformer models work too).

``static/page.js`` draws the result and implements the test hooks (``#text=``, ``#texts=``,
see its header). The model's structure and the paper's Table 1 (top and bottom phrases per
WFSA over the training documents, :func:`~sparse_rational.explain.phrases.summarize_patterns`)
are rendered here, in Python.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from ..config import TrainConfig, default
from ..errors import ParameterError, UserError
from ..explain.documents import encode_documents
from ..explain.phrases import summarize_patterns
from ..explain.report import LIGHT, PALETTE, pattern_view
from ..structure import format_structure
from .payload import model_payload, script_json, static_only

if TYPE_CHECKING:
    from ..explain.phrases import PatternSummary
    from ..pipeline import TextClassifier

HERE = Path(__file__).parent
TEMPLATE = "demo.html.j2"
MODES = ("embedded", "api")


def _asset(name: str) -> str:
    text = (HERE / "static" / name).read_text(encoding="utf-8")
    if "</script" in text.lower():  # it is inlined into a <script> element
        raise RuntimeError(f"{name} must not contain '</script'")
    return text


def _jinja():
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def model_facts(clf: TextClassifier) -> list[tuple[str, str]]:
    """The model's structure and recorded figures, as (name, value) rows."""
    cfg = clf.model.config
    rows = [
        ("structure", format_structure(cfg.structure) if cfg.structure else "(no WFSA left)"),
        ("WFSAs", str(len(cfg.structure))),
        ("lengths of patterns 1..d", ", ".join(map(str, cfg.structure)) or "-"),
        ("main-path transitions", str(cfg.transitions)),
        ("readout", cfg.readout),
        ("classes", ", ".join(clf.classes)),
        ("embeddings", f"{clf.embeddings_source} ({cfg.embedding_dim}-d)"),
    ]
    if clf.vocab is not None:
        rows.append(("vocabulary rows", str(len(clf.vocab))))
    rows.append(("parameters", str(clf.model.num_parameters())))
    m = clf.metrics
    for key, name in (
        ("dev_accuracy", "dev accuracy"),
        ("test_accuracy", "test accuracy"),
        ("reg_strength", "group-lasso lambda"),
        ("dataset", "trained on"),
    ):
        value = m.get(key)
        if value is not None:
            rows.append((name, _fmt(value) if not isinstance(value, dict) else ", ".join(map(str, value.values()))))
    return rows


def readout_text(readout: str) -> str:
    return {
        "final": "after the last token",
        "mean": "as the mean over the tokens",
        "max": "per state as its maximum over the tokens",
    }.get(readout, readout)


def render_page(
    clf: TextClassifier,
    mode: str = "embedded",
    patterns: Sequence[PatternSummary] | None = None,
    table_note: str = "",
    title: str = "sparse-rational",
    subtitle: str = "",
    max_tokens: int = default(TrainConfig, "max_tokens"),
) -> str:
    """The HTML text of the page (module doc). ``patterns``: Table 1 (None: not shown, with
    ``table_note`` saying why); ``max_tokens``: longer texts are cut as ``predict`` cuts them."""
    if mode not in MODES:
        raise ParameterError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if mode == "embedded":
        static_only(clf)
    config = {"mode": mode, "palette": PALETTE, "light": LIGHT}
    return (
        _jinja()
        .get_template(TEMPLATE)
        .render(
            mode=mode,
            title=title,
            subtitle=subtitle,
            readout=clf.model.config.readout,
            readout_text=readout_text(clf.model.config.readout),
            facts=model_facts(clf),
            patterns=None if patterns is None else [pattern_view(p) for p in patterns],
            table_note=table_note,
            config_json=script_json(config),
            model_json=script_json(model_payload(clf, max_tokens)) if mode == "embedded" else "",
            scorer_js=_asset("scorer.js"),
            page_js=_asset("page.js"),
        )
    )


def table_one(clf: TextClassifier, splits, top_k: int, source: str) -> tuple[list[PatternSummary], str]:
    """Table 1 over the training split of ``splits``, and the line that says where from."""
    if not splits.train:
        raise UserError(f"demo: {source} has no training documents for Table 1")
    docs = encode_documents(clf, splits.train)
    return summarize_patterns(clf, docs, top_k), f"From the {len(docs)} training documents of {source}."


def say(text: str) -> None:
    print(f"sparse-rational: {text}", file=sys.stderr)

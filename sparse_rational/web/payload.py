"""The JSON the page and the server exchange: the embedded model, and one explanation.

**The embedded model** (``sparse-rational-demo/1``, :func:`model_payload`): the numbers of
the exported automata (:mod:`sparse_rational.export`) in a compact form. Float arrays are
the model's own float32 values, little-endian, in base64 (so the page computes with exactly
the model's numbers); the vocabulary is one string, tokens joined by newlines (a token never
holds one: ``vocab.txt`` is one token per line)::

    {"format": "sparse-rational-demo/1", "readout": "final" | "mean" | "max",
     "classes": [...], "tokens": {"lowercase", "bos", "eos", "unk"}, "vocab": "tok\\ntok...",
     "dim": e, "structure": [n_1, ..., n_d],
     "embeddings": base64 [V * e], "w": base64 [N * e], "v": base64 [N * e] (state-major),
     "b": [N], "weight": [[d] per class], "bias": [C],
     "max_tokens": m, "chars_per_token": k}  (m: predict's cut, k: data.tokenize.CHARS_PER_TOKEN)

**An explanation** (:func:`explanation_payload`; the page's scorer writes the same shape)::

    {"label": str, "classes": [...], "probabilities": {class: p}, "logits": [C], "bias": [C],
     "readout": str, "tokens": [T],
     "wfsas": [{"wfsa": j, "length": n_j, "score": s_j, "contributions": [s_j * W[c, j]],
                "best": {"score": x, "states": [T]}, "worst": {...}}, ...]}

The server adds ``"truncated": bool`` (it explains the first ``--max-explain-tokens``).
``states[t]``: the state of the path after token ``t`` (``-1``: not read), as
:class:`~sparse_rational.explain.paths.WFSAPath`; the best path ends at the last token
(``final`` readout) or anywhere (``mean``, ``max``), as in ``sparse-rational explain``.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from ..data.tokenize import CHARS_PER_TOKEN
from ..errors import UserError

if TYPE_CHECKING:
    from ..embeddings.featurizer import StaticVectors
    from ..explain.contributions import DocExplanation
    from ..pipeline import TextClassifier

FORMAT = "sparse-rational-demo/1"


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def static_only(clf: TextClassifier, what: str = "demo") -> None:
    """Refuse a model on transformer vectors in one line that points to ``serve``."""
    if clf.vocab is None:
        raise UserError(
            f"{what}: this model reads {clf.embeddings_source} transformer vectors, which a page cannot compute "
            "offline; serve it instead: sparse-rational serve --model DIR"
        )


def model_payload(clf: TextClassifier, max_tokens: int) -> dict:
    """The embedded model of the page (module doc); static word vectors only."""
    static_only(clf)
    assert clf.vocab is not None
    model = clf.model
    for token in clf.vocab.tokens:
        if "\n" in token:  # vocab.txt cannot hold one either
            raise UserError(f"demo: the vocabulary holds a token with a line break ({token!r})")
    return {
        "format": FORMAT,
        "readout": model.config.readout,
        "classes": list(clf.classes),
        "tokens": clf.vocab.token_settings(),
        "vocab": "\n".join(clf.vocab.tokens),
        "dim": model.config.embedding_dim,
        "structure": list(model.config.structure),
        "embeddings": _b64(
            cast("StaticVectors", clf.featurizer).matrix.detach().cpu().numpy()
        ),  # the rows the model reads
        "w": _b64(model.wfsa.w.detach().cpu().numpy().T),
        "v": _b64(model.wfsa.v.detach().cpu().numpy().T),
        "b": [float(x) for x in model.wfsa.b.detach().cpu().numpy()],
        "weight": model.classifier.weight.detach().cpu().double().tolist(),
        "bias": model.classifier.bias.detach().cpu().double().tolist(),
        "max_tokens": max_tokens,
        "chars_per_token": CHARS_PER_TOKEN,
    }


def script_json(obj) -> str:
    """JSON to put inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` as
    ``\\u003c``..., so nothing in the data can end the element; ``/`` as ``\\/``, so that no
    URL (``//``) appears in the file. ``JSON.parse`` reads it back unchanged."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("/", "\\/")):
        text = text.replace(a, b)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def explanation_payload(exp: DocExplanation, structure: Sequence[int]) -> dict:
    """One explained document (module doc) from
    :func:`~sparse_rational.explain.contributions.explain_documents`; ``structure``: the
    model's WFSA lengths."""
    classes = list(exp.classes)
    wfsas = sorted(exp.wfsas, key=lambda w: w.wfsa)
    return {
        "label": classes[exp.predicted],
        "classes": classes,
        "probabilities": {c: float(p) for c, p in zip(classes, exp.probabilities)},
        "logits": [float(x) for x in exp.logits],
        "bias": [float(x) for x in exp.bias],
        "readout": exp.readout,
        "tokens": list(exp.document.tokens),
        "wfsas": [
            {
                "wfsa": w.wfsa,
                "length": int(structure[w.wfsa]),
                "score": float(w.score),
                "contributions": [float(x) for x in w.contributions],
                "best": {"score": _finite(w.best.score), "states": list(w.best.path.states)},
                "worst": {"score": _finite(w.worst.score), "states": list(w.worst.path.states)},
            }
            for w in wfsas
        ],
    }

"""Export a model to run it outside PyTorch: as plain JSON (``sparse-rational-automata/3``,
this module) or as an ONNX graph with its tokenizer beside it (:mod:`.onnx_graph`:
:func:`export_onnx`, read back by :func:`onnx_predict_proba`). Importing this package
imports neither PyTorch nor onnx.

Schema::

    {"format": "sparse-rational-automata/3",
     "readout": "final" | "mean" | "max",
     "classes": [...],
     "tokens": {"lowercase": bool, "bos": str|null, "eos": str|null, "unk": str},
     "vocab": [...],
     "embeddings": [[...], ...],          # row i: the vector of vocab[i] as the WFSAs get it
     "wfsas": [{"states": [{"w": [...], "v": [...], "b": float}, ...]}, ...],
                                          # state k: the transition into q_k (k = 1..n)
     "classifier": {"weight": [[...] one row per class], "bias": [...]},
     "folded": [[...], ...]}              # optional (added in this version, readers may ignore
                                          # it): row i = (w_s.x, all states s, then v_s.x + b_s,
                                          # all states s) for x = embeddings[i], 2N numbers

A stacked or bidirectional model has ``"layers": [{"forward": [wfsa, ...], "backward":
[wfsa, ...]}, ...]`` (WFSAs as in ``"wfsas"``) instead of ``"wfsas"``: layer ``k + 1`` reads,
at each token, the vector of every WFSA's per-step score ``sum_k c_k`` of layer ``k``
(forward WFSAs, then backward ones); a backward WFSA reads the tokens right to left and its
per-step scores are put back in reading order; the top layer's scores (``sum_k r(c_k)``)
feed the classifier.

Scoring a document (token ids ``x_1..x_T`` including ``<s>``/``</s>``): for each WFSA,
``c_0 = 1``, ``c_k = 0``; at each token ``f_k = sigmoid(v_k.x + b_k)``,
``u_k = (w_k.x)(1 - f_k)``, ``c_k <- f_k c_k + u_k c_{k-1}`` (all k at once, old values on
the right); the score is ``sum_k r(c_k)``, where the readout ``r`` takes ``c_k`` after the
last token (``final``), its mean over the tokens (``mean``) or its max over them (``max``);
logits = ``weight @ scores + bias``. Version 1 had no readout (always ``final``); version 2
had no ``"layers"`` (a one-layer model's file is version 2's with the new format name).

``folded`` (one-layer models only) is the projection folded into the vocabulary
(:mod:`sparse_rational.folded`): the states are numbered WFSA after WFSA (``wfsas[0]``'s
states first), N of them, so a scorer reads ``w_k.x`` and ``v_k.x + b_k`` of every token
from one row instead of computing them from the vector (``embeddings`` stays, for readers
of earlier files).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

from ..errors import UserError
from ..fileio import atomic_write_json
from ..folded import FoldedModel
from .onnx_graph import ONNX_FORMAT, export_onnx, onnx_predict_proba

if TYPE_CHECKING:
    from ..embeddings.featurizer import StaticVectors
    from ..model import WFSALayer
    from ..pipeline import TextClassifier

__all__ = ["FORMAT", "ONNX_FORMAT", "export_dict", "export_json", "export_onnx", "onnx_predict_proba"]

FORMAT = "sparse-rational-automata/3"


def export_dict(clf: TextClassifier) -> dict:
    if clf.vocab is None:
        raise UserError(
            f"export: this model reads {clf.embeddings_source} transformer vectors; the JSON "
            "automata format holds models on static word vectors only"
        )
    model = clf.model
    if model.config.deep:
        layers: list[dict] = [{} for _ in range(model.config.layers)]
        for k, direction, layer in model.wfsa_layers():
            layers[k][direction] = _wfsas(layer)
        automata: dict = {"layers": layers}
    else:
        automata = {"wfsas": _wfsas(model.wfsa), "folded": FoldedModel.from_torch(model).table.astype(float).tolist()}
    return {
        "format": FORMAT,
        "readout": model.config.readout,
        "classes": list(clf.classes),
        "tokens": clf.vocab.token_settings(),
        "vocab": list(clf.vocab.tokens),
        "embeddings": cast("StaticVectors", clf.featurizer)
        .matrix.detach()
        .double()
        .cpu()
        .tolist(),  # the rows the model reads
        **automata,
        "classifier": {
            "weight": model.classifier.weight.detach().double().cpu().tolist(),
            "bias": model.classifier.bias.detach().double().cpu().tolist(),
        },
    }


def _wfsas(layer: WFSALayer) -> list[dict]:
    w = layer.w.detach().double().cpu().T.tolist()  # [N][e]
    v = layer.v.detach().double().cpu().T.tolist()
    b = layer.b.detach().double().cpu().tolist()
    return [
        {"states": [{"w": w[k], "v": v[k], "b": b[k]} for k in range(start, end)]} for start, end in layer.layout.slices
    ]


def export_json(clf: TextClassifier, path: str | os.PathLike) -> None:
    atomic_write_json(path, export_dict(clf), indent=None)

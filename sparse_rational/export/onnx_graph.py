"""A one-layer model as an ONNX graph (``model.onnx``) with its tokenizer beside it
(``tokenizer.json``), for onnxruntime in any language, in the browser and on phones.

The graph is the folded form of :mod:`sparse_rational.folded`: per vocabulary entry, ``f``
and ``u`` of every state (N = the transitions, states numbered WFSA after WFSA; ``f =
sigmoid(v.x + b)``, ``u = (w.x)(1 - f)`` already computed, the same float32 numbers the
compiled path reads), then the recurrence as an ONNX ``Scan`` over the time axis::

    inputs   input_ids      int64   [batch, time]  token ids, each row padded on the right
                                                   (any id; the pads are never read)
             lengths        int64   [batch]        real tokens per row (<s> and </s> included)
    output   probabilities  float32 [batch, C]     softmax over the classes (tokenizer.json's order)

    per step t (the Scan's body), for the tokens x_t = input_ids[:, t]:
    f, u     = f_table[x_t], u_table[x_t]                       [batch, M] each
    c        = f * c + u * (c @ shift)                          [batch, M]
    pool     = max(pool, c) ("max") or pool + c * real_t ("mean")

    M = N + 1 columns: the N states, then a constant 1 (f = 1, u = 0 there) that ``shift``
    (0/1, [M, M]) hands to each WFSA's first state as its predecessor (the others read the
    state before them: c_s <- f_s c_s + u_s c_{s-1}). A pad position reads the extra row V
    of the tables (f = 1, u = 0: c stays as it is), so neither the update nor the max needs
    the mask; the mean adds only real steps. c starts at 0 (1 in column N).

    states   = c after the last step ("final"), pool / lengths ("mean") or pool ("max"; 0 for
               an empty row)
    logits   = states @ combine + bias   (combine [M, C]: the linear layer's column of each
               state's WFSA, so the sum per WFSA and the layer are one product; 0 for column N)

The tokenizer (``tokenizer.json``, ``"format": "sparse-rational-onnx/1"``) holds what a
reader needs to make ``input_ids`` from text as ``sparse-rational predict`` does: the
vocabulary (``vocab[i]`` is id ``i``), the ``<s>``/``</s>``/``<unk>`` tokens, the classes in
the output's column order, the readout, and ``max_tokens`` with ``chars_per_token`` (a text
is cut to ``max_tokens * chars_per_token`` characters before it is tokenized, and a longer
document keeps its first ``max_tokens - 1`` tokens and ``</s>``). The README's "ONNX"
section gives the tokenizer's rules for readers in other languages.

onnx and onnxruntime are an optional extra (``pip install 'sparse-rational[onnx]'``),
imported only here, when a graph is built or run.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..data.tokenize import CHARS_PER_TOKEN
from ..errors import UserError, one_line
from ..fileio import atomic_directory, atomic_write_bytes, atomic_write_json
from ..folded import FoldedClassifier, TokenEncoder

ONNX_FORMAT = "sparse-rational-onnx/1"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
OPSET = 17  # Scan, Softmax on the last axis, Split with sizes as an input: onnxruntime >= 1.12, onnxruntime-web
INSTALL = "pip install 'sparse-rational[onnx]'"


def _require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or say in one line how to install them."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX needs the onnx extra, which is not installed ({module} missing): {INSTALL}") from None


def require_onnx() -> None:
    """Refuse in one line, before any work, when the onnx extra is missing."""
    _require("onnx")


def onnx_graph(folded: Any) -> Any:
    """The ``onnx.ModelProto`` of a :class:`~sparse_rational.folded.FoldedModel` (module doc:
    inputs, output and equations)."""
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper  # lazy: optional (onnx)

    n, classes = folded.transitions, len(folded.bias)
    readout = folded.readout
    bias = np.asarray(folded.bias, np.float32)
    init = [numpy_helper.from_array(bias, "bias")]
    nodes = []

    def const(name: str, value: np.ndarray) -> str:
        init.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"])
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])
    if n == 0:  # every WFSA pruned away: the class prior, for every row
        nodes += [
            helper.make_node("Shape", ["lengths"], ["batch"]),
            helper.make_node(
                "Concat", ["batch", const("classes", np.array([classes], np.int64))], ["out_shape"], axis=0
            ),
            helper.make_node("Expand", ["bias", "out_shape"], ["logits"]),
        ]
    else:
        # Every state and its predecessor in one row of M = N + 1 columns: column N is a constant
        # 1 (f = 1, u = 0 there), the predecessor of a WFSA's first state; a pad token (id V)
        # is a row of f = 1, u = 0 everywhere, so a step on it leaves c as it was.
        m_cols = n + 1
        vocab = folded._fu.shape[0]
        table = np.zeros((vocab + 1, 2 * m_cols), np.float32)  # (f of M columns, u of M columns) per token
        table[:vocab, :n], table[:vocab, m_cols : m_cols + n] = folded._fu[:, :n], folded._fu[:, n:]
        table[:vocab, n] = 1.0
        table[vocab, :m_cols] = 1.0
        prev = np.where(folded._first.astype(bool), n, np.arange(n) - 1).astype(np.int64)
        prev = np.concatenate([prev, [n]])  # column N reads itself (times u = 0)
        shift = np.zeros((m_cols, m_cols), np.float32)  # p = c @ shift: p[:, k] = c[:, prev[k]]
        shift[prev, np.arange(m_cols)] = 1.0
        start_row = np.zeros((1, m_cols), np.float32)
        start_row[0, n] = 1.0
        const("f_table", table[:, :m_cols])  # [V + 1, M] float32: the compiled path's f, the pad row last
        const("u_table", table[:, m_cols:])  # [V + 1, M]: and its u
        const("combine", np.concatenate([folded._combine, np.zeros((1, classes), np.float32)]))  # [M, C]
        const("start_row", start_row)
        const("pad_id", np.array(vocab, np.int64))
        const("zero_i", np.array(0, np.int64))
        const("one_i", np.array(1, np.int64))
        const("axis_0", np.array([0], np.int64))
        const("axis_1", np.array([1], np.int64))
        const("one_col", np.array([1], np.int64))
        nodes += [
            # mask [B, T]: position < length; the pads become the pad row's id
            helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
            helper.make_node("Gather", ["ids_shape", "one_i"], ["time"], axis=0),
            helper.make_node("Range", ["zero_i", "time", "one_i"], ["positions"]),
            helper.make_node("Unsqueeze", ["positions", "axis_0"], ["positions_row"]),
            helper.make_node("Unsqueeze", ["lengths", "axis_1"], ["lengths_col"]),
            helper.make_node("Less", ["positions_row", "lengths_col"], ["mask"]),
            helper.make_node("Where", ["mask", "input_ids", "pad_id"], ["ids"]),
            # the states' start [B, M]: 0, and 1 in column N
            helper.make_node("Shape", ["lengths"], ["batch"]),
            helper.make_node("Concat", ["batch", "one_col"], ["tile"], axis=0),
            helper.make_node("Tile", ["start_row", "tile"], ["c0"]),
        ]
        body_init = [
            numpy_helper.from_array(shift, "shift"),
        ]
        body = [  # one step: the rows of this step's tokens, then the update of every state
            helper.make_node("Gather", ["f_table", "ids_t"], ["f"], axis=0),  # [B, M] (the tables: the outer graph's)
            helper.make_node("Gather", ["u_table", "ids_t"], ["u"], axis=0),
            helper.make_node("MatMul", ["c", "shift"], ["p"]),
            helper.make_node("Mul", ["f", "c"], ["fc"]),
            helper.make_node("Mul", ["u", "p"], ["up"]),
            helper.make_node("Add", ["fc", "up"], ["c_out"]),
        ]
        scan_inputs = [helper.make_tensor_value_info("ids_t", TensorProto.INT64, ["batch"])]
        state_in = [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", m_cols])]
        state_out = [helper.make_tensor_value_info("c_out", TensorProto.FLOAT, ["batch", m_cols])]
        scan_in, scan_out, outer = ["c0"], ["c_last"], ["ids"]
        if readout == "mean":  # pool += c at the real tokens only (a pad step repeats c)
            body += [
                helper.make_node("Mul", ["c_out", "m_t"], ["added"]),
                helper.make_node("Add", ["pool", "added"], ["pool_out"]),
            ]
            scan_inputs.append(helper.make_tensor_value_info("m_t", TensorProto.FLOAT, ["batch", 1]))
            nodes += [
                helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["mask_f", const("axis_2", np.array([2], np.int64))], ["mask_steps"]),
            ]
            outer.append("mask_steps")
        elif readout == "max":  # a pad step repeats c, which the max holds already
            body.append(helper.make_node("Max", ["pool", "c_out"], ["pool_out"]))
        if readout != "final":
            state_in.append(helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["batch", m_cols]))
            state_out.append(helper.make_tensor_value_info("pool_out", TensorProto.FLOAT, ["batch", m_cols]))
            if readout == "max":
                fill = helper.make_tensor("pool_fill", TensorProto.FLOAT, [1], [-np.inf])
                nodes += [
                    helper.make_node(
                        "Concat", ["batch", const("m_cols", np.array([m_cols], np.int64))], ["pool_shape"], axis=0
                    ),
                    helper.make_node("ConstantOfShape", ["pool_shape"], ["pool0"], value=fill),
                ]
            else:
                nodes.append(helper.make_node("Mul", ["c0", const("zero_f", np.array(0.0, np.float32))], ["pool0"]))
            scan_in.append("pool0")
            scan_out.append("pool_last")
        graph_body = helper.make_graph(body, "step", [*state_in, *scan_inputs], state_out, body_init)
        nodes.append(
            helper.make_node(
                "Scan",
                [*scan_in, *outer],
                scan_out,
                body=graph_body,
                num_scan_inputs=len(outer),
                scan_input_axes=[1] * len(outer),
            )
        )
        if readout == "final":
            states = "c_last"
        elif readout == "mean":  # the sum over the real tokens / their number (at least 1)
            nodes += [
                helper.make_node("Max", ["lengths_col", const("one_2d", np.array([[1]], np.int64))], ["count"]),
                helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
                helper.make_node("Div", ["pool_last", "count_f"], ["states"]),
            ]
            states = "states"
        else:  # an empty row reads 0, not -inf
            nodes += [
                helper.make_node("Greater", ["lengths_col", const("none", np.array([[0]], np.int64))], ["read"]),
                helper.make_node(
                    "Where", ["read", "pool_last", const("zero_col", np.zeros((1, 1), np.float32))], ["states"]
                ),
            ]
            states = "states"
        nodes += [
            helper.make_node("MatMul", [states, "combine"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
        ]
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    graph = helper.make_graph(nodes, "sparse_rational", [ids, lengths], [probs], init)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sparse-rational",
        doc_string="rational RNN (WFSAs), folded: input_ids [batch, time] int64, lengths [batch] int64 "
        "-> probabilities [batch, classes] float32; tokenizer and classes in tokenizer.json",
    )
    model.ir_version = 8  # what onnxruntime 1.12+ reads (opset 17)
    onnx.checker.check_model(model, full_check=True)
    return model


def _folded_classifier(clf: Any) -> Any:
    """A :class:`~sparse_rational.folded.FoldedClassifier` of ``clf`` (one of them already, or
    a :class:`~sparse_rational.pipeline.TextClassifier`); a model the graph cannot hold is
    refused in one line naming what is missing."""
    if isinstance(clf, FoldedClassifier):
        return clf
    if clf.vocab is None:
        raise UserError(
            f"export --format onnx: this model reads {clf.embeddings_source} transformer vectors; "
            "the ONNX graph holds models on static word vectors only (the transformer is not in it)"
        )
    config = clf.model.config
    if config.deep:
        what = " and ".join(
            w
            for w in (
                f"{config.layers} stacked layers" if config.layers > 1 else "",
                "a backward direction" if config.bidirectional else "",
            )
            if w
        )
        raise UserError(
            f"export --format onnx: this model has {what}; the ONNX graph holds one left-to-right layer "
            "(the layer-to-layer steps and the reversed reading are not in it): use --format json"
        )
    return FoldedClassifier.from_classifier(clf)


def tokenizer_settings(clf: Any, max_tokens: int) -> dict:
    """``tokenizer.json``'s contents (module doc)."""
    return {
        "format": ONNX_FORMAT,
        "model": MODEL_FILE,
        "classes": list(clf.classes),
        "readout": clf.model.readout,
        "tokens": {"lowercase": True, "bos": clf.bos_token, "eos": clf.eos_token, "unk": clf.unk_token},
        "max_tokens": int(max_tokens),
        "chars_per_token": CHARS_PER_TOKEN,
        "vocab": list(clf.tokens),
    }


def export_onnx(clf: Any, out: str | os.PathLike, max_tokens: int | None = None) -> Path:
    """Write ``out/model.onnx`` and ``out/tokenizer.json`` (module doc) for ``clf``, a
    :class:`~sparse_rational.pipeline.TextClassifier` or
    :class:`~sparse_rational.folded.FoldedClassifier` of one left-to-right layer on static
    word vectors (tuned or not: the table is folded from the model's own rows).
    ``max_tokens``: the cut ``predict`` applies by default (default: ``predict``'s default).
    ``out`` is built in a temporary folder and renamed into place; an existing ``out`` is
    replaced only if it is empty or an earlier ONNX export."""
    if max_tokens is None:
        max_tokens = int(config.default(config.TrainConfig, "max_tokens"))
    check_out(Path(out))
    folded = _folded_classifier(clf)
    model = onnx_graph(folded.model)
    settings = tokenizer_settings(folded, max_tokens)
    with atomic_directory(out) as tmp:
        atomic_write_bytes(tmp / MODEL_FILE, model.SerializeToString())
        atomic_write_json(tmp / TOKENIZER_FILE, settings, indent=None)
    return Path(out)


def check_out(path: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding anything but an earlier export."""
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"--out {one_line(path)}: exists and is not a folder (the ONNX export is a folder)")
    entries = {p.name for p in path.iterdir()}
    if entries and not (entries <= {MODEL_FILE, TOKENIZER_FILE} and TOKENIZER_FILE in entries):
        raise UserError(
            f"--out {one_line(path)}: exists and is not an earlier ONNX export (it holds other files); "
            "refusing to replace it"
        )


class OnnxClassifier:
    """An exported graph and its tokenizer: texts to probabilities with onnxruntime, tokenized
    exactly as ``sparse-rational predict`` tokenizes them (its default ``--max-tokens``, from
    ``tokenizer.json``)."""

    def __init__(self, onnx_path: str | os.PathLike, session_options: Any = None):
        ort = _require("onnxruntime")
        path = Path(onnx_path)
        sidecar = path.parent / TOKENIZER_FILE
        try:
            settings = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{sidecar}: cannot read the tokenizer beside {path.name} ({one_line(exc)})") from None
        if not isinstance(settings, dict) or settings.get("format") != ONNX_FORMAT:
            raise UserError(f"{sidecar}: not a {ONNX_FORMAT} tokenizer file")
        tok = settings.get("tokens") or {}
        try:
            self.encoder = TokenEncoder(settings["vocab"], tok.get("bos"), tok.get("eos"), tok["unk"])
            self.classes = [str(c) for c in settings["classes"]]
            self.max_tokens = int(settings["max_tokens"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{sidecar}: a field is missing or wrong ({one_line(exc)})") from None
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types: a file it cannot read
            raise UserError(f"{path}: onnxruntime cannot load it ({one_line(exc, 300)})") from None

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Probabilities ``[n, C]`` of a padded batch (``ids [n, T]`` int64, ``lengths [n]``)."""
        return self.session.run(["probabilities"], {"input_ids": ids, "lengths": lengths})[0]

    def proba_of_rows(self, flat: np.ndarray, lengths: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[n, C]`` of documents given as token rows one after another (the
        compiled path's input): length-sorted batches of ``batch_size``, each padded to its
        longest row."""
        lengths = np.asarray(lengths, np.int64)
        out = np.empty((len(lengths), len(self.classes)), np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        order = np.argsort(lengths, kind="stable")
        for k in range(0, len(order), batch_size):
            rows = order[k : k + batch_size]
            lens = lengths[rows]
            padded = np.zeros((len(rows), int(lens.max(initial=0))), np.int64)
            for j, doc in enumerate(rows.tolist()):
                padded[j, : lens[j]] = flat[starts[doc] : starts[doc + 1]]
            out[rows] = self.run(padded, lens)
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[n, C]`` float32 of ``texts`` (columns in the order of ``classes``)."""
        if not len(texts):
            return np.zeros((0, len(self.classes)), np.float32)
        flat, lengths = self.encoder.encode(texts, self.max_tokens)
        return self.proba_of_rows(flat, lengths, batch_size)


def onnx_predict_proba(onnx_path: str | os.PathLike, texts: Sequence[str]) -> list[dict[str, float]]:
    """One ``{label: probability}`` dict per text: the graph at ``onnx_path`` run by
    onnxruntime on the texts tokenized as ``sparse-rational predict`` does (the tokenizer read
    from ``tokenizer.json`` beside it)."""
    clf = OnnxClassifier(onnx_path)
    return [dict(zip(clf.classes, map(float, row))) for row in clf.predict_proba(texts)]

"""The WFSA layer (built from a structure) and the rational RNN classifier (see docs/DESIGN.md, 'The model')."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from .embeddings.rows import RowTable, StaticRows
from .layout import StateLayout
from .ops import rational_forward, rational_steps, reverse_documents

READOUTS = ("final", "mean", "max")


DIRECTIONS = ("forward", "backward")

Stack = tuple[tuple[tuple[int, ...], ...], ...]
"""The structures of a stacked model: per layer, per direction (forward[, backward])."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; the learned structure lives here.

    ``structure``: the length ``n_j >= 1`` of each WFSA (main-path transitions) of the first
    layer's left-to-right WFSAs; an empty tuple is a model with no WFSA left (it predicts the
    class prior).

    Stacked and bidirectional models (``layers > 1`` or ``bidirectional``): ``stack`` holds
    the structure of every layer and direction (``stack[k][0]`` forward, ``stack[k][1]``
    backward), ``structure`` is ``stack[0][0]``. Left empty, every layer and direction gets
    ``structure``. Layer ``k + 1`` reads the per-step scores of every WFSA of layer ``k``
    (both directions), so its input size is the number of WFSAs of layer ``k``. A one-layer
    left-to-right model has ``stack == ()`` and saves exactly what it saved before.
    """

    structure: tuple[int, ...]
    embedding_dim: int
    num_classes: int
    vocab_size: int = 0  # 0: the model takes vectors, not token ids
    dropout: float = 0.2  # on the WFSA scores, before the linear layer (and between layers)
    input_dropout: float = 0.2  # variational (one mask per document) on the input vectors
    # "final", not RunOptions' "max", on purpose: a model folder saved before readout was recorded reads "final"
    readout: str = "final"  # how a WFSA's score is read: at the end (the paper), mean or max over time
    layers: int = 1  # stacked layers of WFSAs
    bidirectional: bool = False  # a second set of WFSAs per layer reads each document right to left
    stack: Stack = ()  # every layer's and direction's structure (deep models only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", tuple(int(n) for n in self.structure))
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if int(self.layers) < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        object.__setattr__(self, "layers", int(self.layers))
        object.__setattr__(self, "bidirectional", bool(self.bidirectional))
        stack = tuple(tuple(tuple(int(n) for n in s) for s in layer) for layer in self.stack)
        ndir = 2 if self.bidirectional else 1
        if not self.deep:
            if stack not in ((), ((self.structure,),)):
                raise ValueError(f"a one-layer left-to-right model has no stack, got {self.stack}")
            stack = ()
        else:
            if not stack:
                stack = tuple(tuple(self.structure for _ in range(ndir)) for _ in range(self.layers))
            if len(stack) != self.layers or any(len(layer) != ndir for layer in stack):
                raise ValueError(f"stack {stack} does not have {self.layers} layers of {ndir} direction(s)")
            object.__setattr__(self, "structure", stack[0][0])
        object.__setattr__(self, "stack", stack)
        if any(n < 1 for n in self.all_lengths):
            raise ValueError(f"WFSA lengths must be >= 1, got {self.structure_record()}")

    @property
    def deep(self) -> bool:
        """More than one layer, or bidirectional."""
        return self.layers > 1 or self.bidirectional

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.bidirectional else DIRECTIONS[:1]

    @property
    def structures(self) -> Stack:
        """Every layer's structures, per direction (``((structure,),)`` for one layer)."""
        return self.stack if self.deep else ((self.structure,),)

    @property
    def all_lengths(self) -> tuple[int, ...]:
        """Every WFSA's length, layer by layer, direction by direction (flat)."""
        return tuple(n for layer in self.structures for s in layer for n in s)

    @property
    def transitions(self) -> int:
        return sum(self.all_lengths)

    @property
    def num_scores(self) -> int:
        """The classifier's input size: the number of WFSAs of the top layer."""
        return sum(len(s) for s in self.structures[-1])

    def layer_input_dim(self, k: int) -> int:
        """What layer ``k`` reads: the word vectors (``k = 0``) or one score per WFSA of layer ``k - 1``."""
        return self.embedding_dim if k == 0 else sum(len(s) for s in self.structures[k - 1])

    def structure_record(self) -> list[int] | dict:
        """The structure as metrics.json records it: a flat list for one left-to-right layer,
        else ``{"layers": [{"forward": [...], "backward": [...]}, ...]}``."""
        if not self.deep:
            return list(self.structure)
        return {"layers": [{d: list(s) for d, s in zip(self.directions, layer)} for layer in self.stack]}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["structure"] = list(self.structure)
        if self.deep:
            d["stack"] = [{k: list(s) for k, s in zip(self.directions, layer)} for layer in self.stack]
        else:  # one left-to-right layer: exactly the keys it always had
            for key in ("layers", "bidirectional", "stack"):
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        if isinstance(d.get("stack"), list):
            d["stack"] = tuple(
                tuple(tuple(layer[name]) for name in DIRECTIONS if name in layer) if isinstance(layer, dict) else layer
                for layer in d["stack"]
            )
        return cls(**d)


def state_layout(structure: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``is_first [N]`` (state is q_1 of its WFSA) and ``owner [N]`` (its WFSA index), on the
    CPU (:class:`~sparse_rational.layout.StateLayout` holds them, cached per device)."""
    layout = StateLayout.of(tuple(structure))
    return layout.is_first("cpu"), layout.owner("cpu")


class WFSALayer(nn.Module):
    """``d`` chain WFSAs of lengths ``structure``, all read in one pass.

    Parameters (flat state layout, WFSA by WFSA; ``N = sum(structure)``):
    ``w, v``: ``[e, N]``, ``b``: ``[N]``. The group of state ``s`` is
    ``(w[:, s], v[:, s], b[s])``: everything that enters that state.

    ``forward(x [T, B, e], mask [T, B]) -> scores [B, d]``, ``score_j = sum_{i=1..n_j} r(c_ji)``
    (all states but q_0 are final) where the readout ``r`` is ``c(T)`` (``"final"``, the
    paper's), the mean of ``c(t)`` over the document's tokens (``"mean"``) or their max
    (``"max"``). ``self_loop_bias`` initialises every ``b`` (``f = sigmoid(b)`` at a zero
    input: a larger bias remembers longer).
    """

    def __init__(
        self,
        structure: tuple[int, ...],
        embedding_dim: int,
        impl: str = "auto",
        readout: str = "final",
        self_loop_bias: float = 0.0,
    ):
        super().__init__()
        self.structure = tuple(structure)
        self.impl = impl
        self.readout = readout
        n, e = sum(self.structure), embedding_dim
        bound = math.sqrt(3.0 / max(e, 1))  # each column ~ unit norm: groups start near sqrt(2)
        self.w = nn.Parameter(torch.empty(e, n).uniform_(-bound, bound))
        self.v = nn.Parameter(torch.empty(e, n).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.full((n,), float(self_loop_bias)))
        self.layout = StateLayout.of(self.structure)

    @property
    def num_wfsas(self) -> int:
        return len(self.structure)

    def states(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Plus-times values of all states read out over each document, ``[B, N]``."""
        return rational_forward(x, self.w, self.v, self.b, self.layout, mask, impl=self.impl, readout=self.readout)

    def steps(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Every step's WFSA scores ``[T, B, d]`` (``sum_i c_ji(t)``, zero at padding): what
        the next layer of a stacked model reads."""
        return rational_steps(x, self.w, self.v, self.b, self.layout, mask, impl=self.impl)

    @property
    def is_first(self) -> Tensor:
        """``[N]`` bool on the layer's device: state ``s`` is the ``q_1`` of its WFSA."""
        return self.layout.is_first(self.w.device)

    @property
    def owner(self) -> Tensor:
        """``[N]`` long on the layer's device: the WFSA of every state."""
        return self.layout.owner(self.w.device)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        batch = x.shape[1]
        if not self.structure:
            return x.new_zeros(batch, 0)
        c = self.states(x, mask)
        return c.new_zeros(batch, self.num_wfsas).index_add_(1, self.layout.owner(c.device), c)

    def group_norms(self) -> Tensor:
        """``||g_s||_2`` for every state, ``[N]``: ``sqrt(|w_s|^2 + |v_s|^2 + b_s^2)``."""
        return torch.sqrt(self.w.pow(2).sum(0) + self.v.pow(2).sum(0) + self.b.pow(2))


class RationalClassifier(nn.Module):
    """Input vectors -> variational dropout -> WFSA layer -> dropout -> linear.

    The model computes on vectors: :meth:`forward_vectors` (``[B, T, e]``, right-padded,
    ``mask [B, T]``) -> logits ``[B, C]``. :meth:`forward` takes documents as row ids
    ``[B, T]`` of ``embeddings``, the rows it reads (``rows.lookup(ids, mask, dtype)``),
    which belong to the featurizer (:mod:`sparse_rational.embeddings.featurizer`):

    * ``vocab_size > 0``: :class:`~sparse_rational.embeddings.rows.StaticRows`, the word
      vectors ``[V, e]`` of a static vocabulary, frozen or tuned; a submodule, saved with the
      model as ``embeddings`` (given a tensor, the model wraps a copy of it);
    * ``vocab_size == 0``: a :class:`~sparse_rational.embeddings.rows.RowTable` of
      transformer vectors that is never saved, or None (the model then reads vectors only,
      or ids of rows passed to :meth:`forward`).

    Which rows texts become is the featurizer's business, not the model's.
    """

    embeddings: StaticRows | RowTable | None

    def __init__(
        self,
        config: ModelConfig,
        embeddings: StaticRows | RowTable | Tensor | None = None,
        impl: str = "auto",
        self_loop_bias: float = 0.0,
    ):
        super().__init__()
        self.config = config
        if config.vocab_size:
            if isinstance(embeddings, RowTable):
                raise ValueError("a model with a vocabulary reads static rows (StaticRows or a tensor), not a RowTable")
            if not isinstance(embeddings, StaticRows):
                embeddings = StaticRows(
                    torch.zeros(config.vocab_size, config.embedding_dim) if embeddings is None else embeddings
                )
            if (len(embeddings), embeddings.dim) != (config.vocab_size, config.embedding_dim):
                raise ValueError(f"embeddings of shape {tuple(embeddings.weight.shape)} for config {config}")
        elif isinstance(embeddings, (Tensor, StaticRows)):
            raise ValueError("a model with vocab_size 0 reads rows it does not save: a RowTable, or None")
        self.embeddings = embeddings
        # saved as "embeddings" (not "embeddings.weight"): the files of every earlier version
        self._register_state_dict_hook(_rows_saved_as_embeddings)
        self.register_load_state_dict_pre_hook(_rows_loaded_from_embeddings)
        self.wfsa = WFSALayer(
            config.structure, config.embedding_dim, impl=impl, readout=config.readout, self_loop_bias=self_loop_bias
        )
        self.upper = nn.ModuleDict()  # deep models: every layer and direction but the first forward one
        for k, layer in enumerate(config.structures):
            for direction, structure in zip(config.directions, layer):
                if (k, direction) != (0, "forward"):
                    self.upper[f"l{k}_{direction}"] = WFSALayer(
                        structure, config.layer_input_dim(k), impl, config.readout, self_loop_bias
                    )
        self.dropout = nn.Dropout(config.dropout)
        if config.num_scores:
            self.classifier = nn.Linear(config.num_scores, config.num_classes)
        else:  # every state pruned: only the bias is left (the class prior after finetuning)
            self.classifier = nn.Linear(1, config.num_classes)
            self.classifier.weight = nn.Parameter(torch.empty(config.num_classes, 0))

    precision: str = "fp32"  # set by the run (device.py): bf16 / fp16 projections on CUDA

    def scores(self, vectors: Tensor, mask: Tensor) -> Tensor:
        """WFSA scores ``[B, d]`` of documents ``[B, T, e]`` (right-padded, ``mask [B, T]``)."""
        x = vectors.transpose(0, 1)  # [T, B, e]
        p = self.config.input_dropout
        if self.training and p > 0:
            keep = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1 - p) / (1 - p)
            x = x * keep
        if self.precision != "fp32" and x.is_cuda:  # the projection in half, the recurrence in float32
            half = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast("cuda", dtype=half):
                return self._layers(x, mask.transpose(0, 1)).float()
        return self._layers(x, mask.transpose(0, 1))

    def _layers(self, x: Tensor, mask: Tensor) -> Tensor:
        if not self.config.deep:
            return self.wfsa(x, mask)
        return self.stacked_scores(x, mask)

    def wfsa_layers(self) -> list[tuple[int, str, WFSALayer]]:
        """``(layer, direction, WFSA layer)`` for every layer and direction, bottom up."""
        out = []
        for k, layer in enumerate(self.config.structures):
            for direction in self.config.directions[: len(layer)]:
                module = self.wfsa if (k, direction) == (0, "forward") else self.upper[f"l{k}_{direction}"]
                out.append((k, direction, cast(WFSALayer, module)))
        return out

    def stacked_scores(self, x: Tensor, mask: Tensor | None, all_layers: bool = False) -> Any:
        """The top layer's WFSA scores ``[B, d_top]`` of a stacked or bidirectional model
        (``x [T, B, e]``, ``mask [T, B]``, right-padded). Layer ``k + 1`` reads the per-step
        scores of every WFSA of layer ``k`` (forward, then backward, concatenated); a backward
        WFSA reads each document reversed within its real tokens, and its per-step scores
        are put back in reading order. ``all_layers``: also the per-step scores of the lower
        layers, ``([T, B, d_k] per lower layer, top scores)``."""
        modules = self.wfsa_layers()
        top = self.config.layers - 1
        lower: list[Tensor] = []
        if self.config.transitions == 0:
            return (lower, x.new_zeros(x.shape[1], 0)) if all_layers else x.new_zeros(x.shape[1], 0)
        for k in range(self.config.layers):
            outs = []
            for _, direction, layer in (m for m in modules if m[0] == k):
                xin = x if direction == "forward" else reverse_documents(x, mask)
                if k == top:
                    outs.append(layer(xin, mask))
                else:
                    y = layer.steps(xin, mask)
                    outs.append(y if direction == "forward" else reverse_documents(y, mask))
            x = torch.cat(outs, dim=-1)
            if k < top:
                lower.append(x)
                x = self.dropout(x)
        return (lower, x) if all_layers else x

    def forward_vectors(self, vectors: Tensor, mask: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.scores(vectors, mask)))

    def forward(self, ids: Tensor, mask: Tensor, rows: Any = None) -> Tensor:
        """Logits of documents given as row ids of ``rows`` (default: :attr:`embeddings`; a
        featurizer's table of texts met at prediction, say), which the model does not hold."""
        rows = self.embeddings if rows is None else rows
        if rows is None:
            raise ValueError("this model reads vectors: call forward_vectors, or pass the rows the ids index")
        return self.forward_vectors(rows.lookup(ids, mask, self.wfsa.w.dtype), mask)

    @property
    def tuned_rows(self) -> bool:
        """The model's static rows are trained (parameters), not frozen: see :meth:`StaticRows.tune_`."""
        return bool(getattr(self.embeddings, "tuned", False))

    depth_discount: float = 0.0  # set by the run: the group of the i-th state of a WFSA weighs i^-discount

    def penalty_weights(self) -> Tensor:
        """``[N]`` (every layer's states, in :meth:`wfsa_layers` order): the weight of each
        state's group in the penalty, ``i ** -depth_discount`` for the ``i``-th state of its
        WFSA (all ones at 0, the paper's penalty). A discount above 0 makes a longer pattern
        cheaper to keep than a new one-word one, so n-grams can survive a small budget."""
        depths = [i for _, _, m in self.wfsa_layers() for a, b in m.layout.slices for i in range(1, b - a + 1)]
        d = torch.tensor(depths, dtype=self.wfsa.b.dtype, device=self.wfsa.b.device)
        return d.pow(-float(self.depth_discount)) if self.depth_discount else torch.ones_like(d)

    def penalty(self) -> Tensor:
        """Group lasso: ``sum_s a_s ||g_s||_2`` over every state of every layer and direction (no
        sqrt(group size) factor, as the authors; ``a_s``: :meth:`penalty_weights`, all 1 by default)."""
        norms = torch.cat([m.group_norms() for _, _, m in self.wfsa_layers()])
        if self.depth_discount:
            return (norms * self.penalty_weights()).sum()
        return norms.sum()

    def num_parameters(self) -> int:
        """Trained numbers: the WFSAs and the classifier, plus the rows when they are tuned."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_model_parameters(self) -> int:
        """The WFSAs' and the classifier's numbers, without any word vectors."""
        return sum(p.numel() for n, p in self.named_parameters() if p.requires_grad and not n.startswith("embeddings."))


def _rows_saved_as_embeddings(module: nn.Module, state: dict, prefix: str, _meta: Any) -> None:
    if prefix + "embeddings.weight" in state:
        state[prefix + "embeddings"] = state.pop(prefix + "embeddings.weight")


def _rows_loaded_from_embeddings(module: nn.Module, state: dict, prefix: str, *_: Any) -> None:
    if prefix + "embeddings" in state:
        state[prefix + "embeddings.weight"] = state.pop(prefix + "embeddings")

"""Structures: parsing ``--patterns``, group norms, and pruning into a smaller model.

Pruning (see docs/DESIGN.md, 'Group lasso and pruning'): a state whose group norm is below ``epsilon`` is removed;
removing ``q_i`` makes ``q_{i+1}..`` unreachable, so each WFSA keeps the longest prefix of
states whose groups are all above ``epsilon``; a WFSA left with no state is removed. The
pruned model is a *new* model with physically smaller tensors, built from a new config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from .config import StructureOptions, default
from .errors import ParameterError
from .log import get_logger
from .model import ModelConfig, RationalClassifier, WFSALayer

_PATTERN = re.compile(r"^\s*(\d{1,18})\s*x\s*(\d{1,18})\s*$")
MAX_TRANSITIONS = 100_000
_log = get_logger(__name__)


def parse_patterns(spec: str) -> tuple[int, ...]:
    """``"24x4"`` -> 24 WFSAs of length 4; ``"6x1,6x2"`` -> 6 of length 1 then 6 of length 2."""
    parts: list[tuple[int, int]] = []
    for part in str(spec).split(","):
        m = _PATTERN.match(part)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise ParameterError(
                "patterns",
                f"cannot read {part.strip()!r} in {spec!r}; expected COUNTxLENGTH "
                "with positive integers, comma-separated, e.g. 24x4 or 6x1,6x2,6x3,6x4",
            )
        parts.append((int(m.group(1)), int(m.group(2))))
    total = sum(count * length for count, length in parts)  # checked before any list is built
    if total > MAX_TRANSITIONS:
        raise ParameterError("patterns", f"{spec!r} asks for {total} transitions; at most {MAX_TRANSITIONS}")
    return tuple(length for count, length in parts for _ in range(count))


MAX_WEIGHTS = 1 << 30  # the WFSAs' weights of all layers and directions (4 GiB in float32)


def parse_stack(spec: str, layers: int = 1) -> tuple[tuple[int, ...], ...]:
    """Per-layer structures of ``--patterns``: one spec for every layer (``"24x4"``), or a
    ``/``-separated spec per layer (``"24x4/12x2"``: as many as ``layers``). The size is
    bounded up front (:func:`check_size`, without the embedding size, which is not known yet)."""
    parts = str(spec).split("/")
    if len(parts) == 1:
        return repeat_layers(parse_patterns(spec), layers, spec)
    if len(parts) != layers:
        raise ParameterError(
            "patterns", f"{spec!r} gives {len(parts)} layers ('/'-separated) but {{layers}} is {layers}", "layers"
        )
    stack = tuple(parse_patterns(p) for p in parts)
    check_size(stack, spec=spec)
    return stack


def repeat_layers(structure: tuple[int, ...], layers: int, spec: object = None) -> tuple[tuple[int, ...], ...]:
    """``structure`` for each of ``layers`` layers, its size checked before the stack is built."""
    shown = spec if spec is not None else format_structure(structure)
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ParameterError("layers", f"must be a positive integer, got {layers!r}")
    if sum(structure) * layers > MAX_TRANSITIONS:  # before a tuple of `layers` items exists
        raise ParameterError(
            "patterns",
            f"{shown!r} in each of {{layers}} {layers} asks for {sum(structure) * layers} transitions; "
            f"at most {MAX_TRANSITIONS}",
            "layers",
        )
    stack = (tuple(structure),) * layers
    check_size(stack, spec=shown)
    return stack


def check_size(
    stack: tuple[tuple[int, ...], ...],
    bidirectional: bool = False,
    embedding_dim: int | None = None,
    spec: object = None,
) -> None:
    """The bound of ``--patterns``, on every layer and direction: at most
    :data:`MAX_TRANSITIONS` transitions in all, and at most :data:`MAX_WEIGHTS` weights,
    ``2 x inputs x transitions`` per layer and direction, where layer 1 reads
    ``embedding_dim`` (when known) and layer ``k + 1`` the scores of layer ``k``'s WFSAs
    of both directions. A :class:`ParameterError` naming ``patterns``."""
    ndir = 2 if bidirectional else 1
    shown = f"{spec!r}" if spec is not None else "the structure"
    where = f" over {len(stack)} layers" if len(stack) > 1 else ""
    where += " and 2 directions" if ndir == 2 else ""
    transitions = sum(map(sum, stack)) * ndir
    if transitions > MAX_TRANSITIONS:
        raise ParameterError(
            "patterns", f"{shown} asks for {transitions} transitions{where}; at most {MAX_TRANSITIONS}"
        )
    weights = 2 * (embedding_dim or 0) * sum(stack[0]) * ndir if stack else 0
    for below, layer in zip(stack, stack[1:]):
        weights += 2 * len(below) * ndir * sum(layer) * ndir
    if weights > MAX_WEIGHTS:
        size = f" on {embedding_dim}-d vectors" if embedding_dim else ""
        raise ParameterError(
            "patterns",
            f"{shown}{where}{size} needs {weights} weights (2 x inputs x transitions per layer); at most {MAX_WEIGHTS}",
        )


def format_structure(structure: tuple[int, ...] | list[int] | dict) -> str:
    """``(4, 4, 2, 1)`` -> ``"2x4,1x2,1x1"`` (counts by length, longest first). A stacked
    model's record (:meth:`~sparse_rational.model.ModelConfig.structure_record`) reads
    ``"layer 1: 2x4 + backward 2x4; layer 2: ..."``."""
    if isinstance(structure, dict):
        layers = structure.get("layers") or []
        return "; ".join(
            f"layer {k + 1}: "
            + " + ".join((f"{d} " if d != "forward" else "") + format_structure(tuple(s)) for d, s in layer.items())
            for k, layer in enumerate(layers)
        )
    if not structure:
        return "(empty)"
    counts: dict[int, int] = {}
    for n in structure:
        counts[n] = counts.get(n, 0) + 1
    return ",".join(f"{counts[n]}x{n}" for n in sorted(counts, reverse=True))


@dataclass(frozen=True)
class PruneResult:
    model: RationalClassifier
    kept_states: list[int]  # flat indices of the old layer's states that were kept (stacked: all layers')
    kept_wfsas: list[int]  # indices of the old WFSAs that kept at least one state (stacked: all layers')
    group_norms: list[list[float]]  # per WFSA, per state, before pruning (stacked: every layer's WFSAs)


def kept_lengths(norms: list[list[float]], epsilon: float) -> list[int]:
    """For each WFSA, the length of the longest prefix of states with norm >= epsilon."""
    out = []
    for states in norms:
        k = 0
        while k < len(states) and states[k] >= epsilon:
            k += 1
        out.append(k)
    return out


def group_norms_by_wfsa(model: RationalClassifier) -> list[list[float]]:
    """Per WFSA, per state, the group norms; a stacked model lists every layer's WFSAs,
    layer by layer, forward then backward (the order of :meth:`RationalClassifier.wfsa_layers`)."""
    return [wfsa for _, _, layer in model.wfsa_layers() for wfsa in group_norms_by_wfsa_of(layer)]


def _kept_stack(model: RationalClassifier, epsilon: float) -> tuple[list[list[int]], int | None]:
    """Kept lengths per layer and direction (in :meth:`~RationalClassifier.wfsa_layers`
    order), and the first layer left without any WFSA (None if every layer keeps one). Such
    a layer ends the stack: nothing above it reads anything, so nothing is kept at all."""
    kept = [kept_lengths(group_norms_by_wfsa_of(layer), epsilon) for _, _, layer in model.wfsa_layers()]
    ndir = len(model.config.directions)
    dead = None
    if model.config.deep:
        for k in range(model.config.layers):
            if not any(n for lengths in kept[k * ndir : (k + 1) * ndir] for n in lengths):
                dead = k
                break
    if dead is not None:
        kept = [[0] * len(lengths) for lengths in kept]
    return kept, dead


def group_norms_by_wfsa_of(layer: WFSALayer) -> list[list[float]]:
    """Per WFSA, per state, the group norms of one WFSA layer."""
    flat = layer.group_norms().detach().cpu().tolist()
    return [flat[a:b] for a, b in layer.layout.slices]


def surviving_structure(model: RationalClassifier, epsilon: float) -> tuple[int, ...]:
    """The structure :func:`prune` would leave (cheap: no new model is built); a stacked
    model's surviving lengths flat, every layer and direction (empty when a layer dies)."""
    if not model.config.deep:
        return tuple(k for k in kept_lengths(group_norms_by_wfsa(model), epsilon) if k > 0)
    kept, _ = _kept_stack(model, epsilon)
    return tuple(n for lengths in kept for n in lengths if n > 0)


PENALTY_UPDATES = ("gradient", "proximal")


def adam_group_step_sizes(model: RationalClassifier, opt: torch.optim.Optimizer) -> torch.Tensor:
    """``eta_s`` for every state group ``[N]`` (a stacked model: every layer's and
    direction's states, concatenated in :meth:`~RationalClassifier.wfsa_layers` order)."""
    return torch.cat([_layer_step_sizes(layer, opt) for _, _, layer in model.wfsa_layers()])


def _layer_step_sizes(layer: WFSALayer, opt: torch.optim.Optimizer) -> torch.Tensor:
    """``eta_s`` for every state group ``[N]`` of one WFSA layer: Adam's step size in the group's own metric.

    Adam moves coordinate ``i`` by ``lr * m_i / D_i`` with ``D_i = sqrt(v_i / (1 - beta2^t)) + eps``:
    it is gradient descent in the metric ``diag(D) / lr``. The proximal operator of the
    group-lasso penalty in that metric has no closed form when ``D`` varies inside a group,
    so each group uses the mean of its ``D_i`` (over ``w[:, s]``, ``v[:, s]`` and ``b[s]``):
    ``eta_s = lr / mean_i D_i``. A group is then kept at a fixed point exactly when its
    loss gradient is large against ``lambda`` (``||grad_s|| > lambda``, the group-lasso
    optimality condition), whatever the scale of the gradients; a plain ``eta = lr`` (the
    naive form) ignores that scale and prunes all groups at once once lambda is large enough.
    Before Adam's first step, ``eta_s = 0`` (no shrinkage).
    """
    w, v, b = layer.w, layer.v, layer.b
    group = next(g for g in opt.param_groups if any(p is w for p in g["params"]))
    lr, (_, beta2), eps = group["lr"], group["betas"], group["eps"]
    total = torch.zeros_like(b)
    for p, reduce in ((w, True), (v, True), (b, False)):
        st = opt.state.get(p, {})
        if "exp_avg_sq" not in st:
            return torch.zeros_like(b)
        step = float(st["step"])
        d = (st["exp_avg_sq"] / (1 - beta2**step)).sqrt() + eps
        total += d.sum(0) if reduce else d
    mean_d = total / (2 * w.shape[0] + 1)
    return lr / mean_d


@torch.no_grad()
def group_soft_threshold_(model: RationalClassifier, thresholds: torch.Tensor) -> None:
    """The proximal operator of ``sum_s t_s ||g_s||`` applied in place to every state group:
    ``g_s <- max(0, 1 - t_s / ||g_s||) * g_s`` (a group whose norm is at most ``t_s`` becomes
    exactly zero, the others shrink towards zero by ``t_s``); ``thresholds`` covers every
    layer's states, in :meth:`~RationalClassifier.wfsa_layers` order."""
    start = 0
    for _, _, wfsa in model.wfsa_layers():
        norms = wfsa.group_norms()
        t = thresholds[start : start + norms.shape[0]]
        start += norms.shape[0]
        scale = torch.clamp(1 - t / norms.clamp_min(torch.finfo(norms.dtype).tiny), min=0)
        wfsa.w.mul_(scale)
        wfsa.v.mul_(scale)
        wfsa.b.mul_(scale)


def proximal_step_(model: RationalClassifier, opt: torch.optim.Optimizer, reg_strength: float) -> None:
    """After an optimizer step: the group soft-threshold with ``t_s = eta_s * lambda``, where
    ``eta_s`` is the step size just taken (Adam: :func:`adam_group_step_sizes`; SGD: lr)."""
    if isinstance(opt, torch.optim.Adam):
        eta = adam_group_step_sizes(model, opt)
    else:
        n = sum(layer.b.shape[0] for _, _, layer in model.wfsa_layers())
        eta = model.wfsa.b.new_full((n,), opt.param_groups[0]["lr"])
    weights = model.penalty_weights() if model.depth_discount else 1.0
    group_soft_threshold_(model, eta * reg_strength * weights)


@torch.no_grad()
def prune(model: RationalClassifier, epsilon: float = default(StructureOptions, "epsilon")) -> PruneResult:
    """A new, smaller model holding the surviving states (see module doc).

    Function-preserving: the logits of the new model equal the old ones whenever the
    removed groups are exactly zero (a zero group gives ``u = 0``, so the state and all
    states after it stay at zero). A stacked model is pruned per layer and direction; a
    WFSA of layer ``k`` that keeps no state scores 0 at every step, so the rows of layer
    ``k + 1`` that read it go too. A layer left without any WFSA ends the stack: the
    pruned model is empty (it predicts the class prior), and a warning says so.
    """
    if model.config.deep:
        return _prune_stack(model, epsilon)
    norms = group_norms_by_wfsa(model)
    keep_len = kept_lengths(norms, epsilon)
    kept_states: list[int] = []
    kept_wfsas: list[int] = []
    for j, ((start, _), k) in enumerate(zip(model.wfsa.layout.slices, keep_len)):
        if k > 0:
            kept_wfsas.append(j)
            kept_states.extend(range(start, start + k))
    structure = tuple(k for k in keep_len if k > 0)
    config = replace(model.config, structure=structure)
    new = _with_rows_of(model, config)
    new.to(device=model.wfsa.w.device, dtype=model.wfsa.w.dtype).train(model.training)
    new.precision = model.precision
    idx = torch.tensor(kept_states, dtype=torch.long, device=model.wfsa.w.device)
    new.wfsa.w.copy_(model.wfsa.w[:, idx])
    new.wfsa.v.copy_(model.wfsa.v[:, idx])
    new.wfsa.b.copy_(model.wfsa.b[idx])
    wfsa_idx = torch.tensor(kept_wfsas, dtype=torch.long, device=idx.device)
    new.classifier.weight.copy_(model.classifier.weight[:, wfsa_idx])
    new.classifier.bias.copy_(model.classifier.bias)
    return PruneResult(new, kept_states, kept_wfsas, norms)


def _with_rows_of(model: RationalClassifier, config: ModelConfig) -> RationalClassifier:
    """A new model of ``config`` over rows of its own copied from ``model``'s (tuned as they
    are tuned, see :meth:`~sparse_rational.embeddings.rows.StaticRows.copy`), with the same
    penalty weights."""
    rows = model.embeddings.copy() if model.embeddings is not None else None
    new = RationalClassifier(config, rows, impl=model.wfsa.impl)
    new.depth_discount = model.depth_discount
    return new


def _prune_stack(model: RationalClassifier, epsilon: float) -> PruneResult:
    cfg = model.config
    norms = group_norms_by_wfsa(model)
    kept, dead = _kept_stack(model, epsilon)
    if dead is not None:
        _log.warning(
            f"layer {dead + 1} was pruned to nothing: the stack ends there and nothing above it reads "
            f"anything, so every layer is removed and the model predicts the class prior"
        )
    modules = model.wfsa_layers()
    ndir = len(cfg.directions)
    stack = tuple(tuple(tuple(n for n in kept[k * ndir + d] if n > 0) for d in range(ndir)) for k in range(cfg.layers))
    config = replace(cfg, structure=stack[0][0], stack=stack)
    new = _with_rows_of(model, config)
    device = model.wfsa.w.device
    new.to(device=device, dtype=model.wfsa.w.dtype).train(model.training)
    new_layers = new.wfsa_layers()
    kept_states: list[int] = []  # flat over every layer's states (wfsa_layers order)
    kept_wfsas: list[int] = []  # flat over every layer's WFSAs
    below: list[int] = []  # the WFSAs of the layer below that survive, in its concatenated order
    state_base = wfsa_base = 0
    for k in range(cfg.layers):
        here: list[int] = []
        offset = 0  # WFSA index in this layer's concatenated output
        for d in range(ndir):
            old = modules[k * ndir + d][2]
            states = [a + i for (a, _), n in zip(old.layout.slices, kept[k * ndir + d]) for i in range(n)]
            wfsas = [j for j, n in enumerate(kept[k * ndir + d]) if n > 0]
            target = new_layers[k * ndir + d][2]
            idx = torch.tensor(states, dtype=torch.long, device=device)
            rows = (
                torch.arange(old.w.shape[0], device=device)
                if k == 0
                else torch.tensor(below, dtype=torch.long, device=device)
            )
            target.w.copy_(old.w[rows][:, idx])
            target.v.copy_(old.v[rows][:, idx])
            target.b.copy_(old.b[idx])
            kept_states += [state_base + s for s in states]
            kept_wfsas += [wfsa_base + j for j in wfsas]
            here += [offset + j for j in wfsas]
            state_base += old.layout.num_states
            wfsa_base += old.num_wfsas
            offset += old.num_wfsas
        below = here
    cols = torch.tensor(below, dtype=torch.long, device=device)
    new.classifier.weight.copy_(model.classifier.weight[:, cols])
    new.classifier.bias.copy_(model.classifier.bias)
    return PruneResult(new, kept_states, kept_wfsas, norms)

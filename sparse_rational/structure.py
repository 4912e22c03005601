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

from .errors import ParameterError
from .model import RationalClassifier

_PATTERN = re.compile(r"^\s*(\d{1,18})\s*x\s*(\d{1,18})\s*$")
MAX_TRANSITIONS = 100_000


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


def parse_stack(spec: str, layers: int = 1) -> tuple[tuple[int, ...], ...]:
    """Per-layer structures of ``--patterns``: one spec for every layer (``"24x4"``), or a
    ``/``-separated spec per layer (``"24x4/12x2"``: as many as ``layers``)."""
    parts = str(spec).split("/")
    if len(parts) == 1:
        return tuple(parse_patterns(spec) for _ in range(layers))
    if len(parts) != layers:
        raise ParameterError(
            "patterns", f"{spec!r} gives {len(parts)} layers ('/'-separated) but {{layers}} is {layers}", "layers"
        )
    stack = tuple(parse_patterns(p) for p in parts)
    if sum(map(sum, stack)) > MAX_TRANSITIONS:
        raise ParameterError("patterns", f"{spec!r} asks for more than {MAX_TRANSITIONS} transitions")
    return stack


def format_structure(structure: tuple[int, ...] | list[int] | dict) -> str:
    """``(4, 4, 2, 1)`` -> ``"2x4,1x2,1x1"`` (counts by length, longest first). A stacked
    model's record (:meth:`~sparse_rational.model.ModelConfig.structure_record`) reads
    ``"layer 1: 2x4 | backward 2x4; layer 2: ..."``."""
    if isinstance(structure, dict):
        layers = structure.get("layers") or []
        return "; ".join(
            f"layer {k + 1}: "
            + " | ".join((f"{d} " if d != "forward" else "") + format_structure(tuple(s)) for d, s in layer.items())
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
    kept_states: list[int]  # flat indices of the old layer's states that were kept
    kept_wfsas: list[int]  # indices of the old WFSAs that kept at least one state
    group_norms: list[list[float]]  # per WFSA, per state, before pruning


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
    flat = model.wfsa.group_norms().detach().cpu().tolist()
    return [flat[a:b] for a, b in model.wfsa.layout.slices]


def surviving_structure(model: RationalClassifier, epsilon: float) -> tuple[int, ...]:
    """The structure :func:`prune` would leave (cheap: no new model is built)."""
    return tuple(k for k in kept_lengths(group_norms_by_wfsa(model), epsilon) if k > 0)


PENALTY_UPDATES = ("gradient", "proximal")


def adam_group_step_sizes(model: RationalClassifier, opt: torch.optim.Optimizer) -> torch.Tensor:
    """``eta_s`` for every state group ``[N]``: Adam's step size in the group's own metric.

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
    w, v, b = model.wfsa.w, model.wfsa.v, model.wfsa.b
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
    exactly zero, the others shrink towards zero by ``t_s``)."""
    wfsa = model.wfsa
    norms = wfsa.group_norms()
    scale = torch.clamp(1 - thresholds / norms.clamp_min(torch.finfo(norms.dtype).tiny), min=0)
    wfsa.w.mul_(scale)
    wfsa.v.mul_(scale)
    wfsa.b.mul_(scale)


def proximal_step_(model: RationalClassifier, opt: torch.optim.Optimizer, reg_strength: float) -> None:
    """After an optimizer step: the group soft-threshold with ``t_s = eta_s * lambda``, where
    ``eta_s`` is the step size just taken (Adam: :func:`adam_group_step_sizes`; SGD: lr)."""
    if isinstance(opt, torch.optim.Adam):
        eta = adam_group_step_sizes(model, opt)
    else:
        eta = torch.full_like(model.wfsa.b, opt.param_groups[0]["lr"])
    group_soft_threshold_(model, eta * reg_strength)


@torch.no_grad()
def prune(model: RationalClassifier, epsilon: float = 0.1) -> PruneResult:
    """A new, smaller model holding the surviving states (see module doc).

    Function-preserving: the logits of the new model equal the old ones whenever the
    removed groups are exactly zero (a zero group gives ``u = 0``, so the state and all
    states after it stay at zero).
    """
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
    new = RationalClassifier(config, model.embeddings, impl=model.wfsa.impl)
    new.to(device=model.wfsa.w.device, dtype=model.wfsa.w.dtype).train(model.training)
    idx = torch.tensor(kept_states, dtype=torch.long, device=model.wfsa.w.device)
    new.wfsa.w.copy_(model.wfsa.w[:, idx])
    new.wfsa.v.copy_(model.wfsa.v[:, idx])
    new.wfsa.b.copy_(model.wfsa.b[idx])
    wfsa_idx = torch.tensor(kept_wfsas, dtype=torch.long, device=idx.device)
    new.classifier.weight.copy_(model.classifier.weight[:, wfsa_idx])
    new.classifier.bias.copy_(model.classifier.bias)
    return PruneResult(new, kept_states, kept_wfsas, norms)

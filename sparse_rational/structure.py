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

from .errors import ParameterError, UserError
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
                "patterns", f"cannot read {part.strip()!r} in {spec!r}; expected COUNTxLENGTH "
                "with positive integers, comma-separated, e.g. 24x4 or 6x1,6x2,6x3,6x4"
            )
        parts.append((int(m.group(1)), int(m.group(2))))
    total = sum(count * length for count, length in parts)  # checked before any list is built
    if total > MAX_TRANSITIONS:
        raise ParameterError("patterns", f"{spec!r} asks for {total} transitions; at most {MAX_TRANSITIONS}")
    return tuple(length for count, length in parts for _ in range(count))


def format_structure(structure: tuple[int, ...]) -> str:
    """``(4, 4, 2, 1)`` -> ``"2x4,1x2,1x1"`` (counts by length, longest first)."""
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
    out, start = [], 0
    for n in model.config.structure:
        out.append(flat[start : start + n])
        start += n
    return out


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
    start = 0
    for j, (n, k) in enumerate(zip(model.config.structure, keep_len)):
        if k > 0:
            kept_wfsas.append(j)
            kept_states.extend(range(start, start + k))
        start += n
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

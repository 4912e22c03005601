"""Structure learning: penalise -> prune -> finetune (docs/DESIGN.md, "Structure learning").

``learn_structure`` trains a model with the group-lasso penalty for a fixed number of
epochs (no LR schedule), prunes it at ``epsilon`` and finetunes the smaller model without
the penalty. With a target size, ``search_reg_strength`` repeats the penalised phase with
the authors' search over lambda until the pruned model has the target number of
transitions. Every training run goes through the phase runner (:mod:`.phases`), which
checkpoints and resumes; nothing here knows about checkpoints.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .config import StructureOptions
from .errors import UserError
from .model import RationalClassifier
from .phases import Phases
from .structure import PruneResult, format_structure, prune
from .train import EncodedData, FitResult, TrainConfig, accuracy


@dataclass
class LearnResult:
    model: RationalClassifier
    reg_strength: float
    structure_before_pruning: tuple[int, ...]
    group_norms: list[list[float]]
    penalised: FitResult
    finetune: FitResult
    search: list[dict] = field(default_factory=list)


def penalise(phases: Phases, name: str, make_model: Callable[[], RationalClassifier], train: EncodedData,
             dev: EncodedData, cfg: TrainConfig, opts: StructureOptions, reg_strength: float,
             verbose: bool = True) -> tuple[RationalClassifier, FitResult]:
    """A fresh model trained with the penalty for ``opts.reg_epochs`` epochs, no early
    stopping, no schedule, ending with its last weights (not its best dev epoch)."""
    model = make_model()
    result = phases.fit(name, model, train, dev, cfg, reg_strength=reg_strength, epochs=opts.reg_epochs,
                        early_stopping=False, lr_schedule=False, keep_best=False,
                        desc=f"penalised (lambda {reg_strength:.3g})", verbose=verbose)
    return model, result


def search_reg_strength(
    phases: Phases,
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> tuple[float, PruneResult, FitResult, list[dict]]:
    """The authors' search: start at 8e-6, multiply (too many transitions) or divide (too
    few) by ``rate`` (2 at first); on each change of direction ``rate = (rate + 1) / 2``;
    stay within ``[1e-9, 1e2]``; give up after 25 tries. Each try is a full penalised run
    (phase ``search:k``). Succeeds when the pruned model is within ``opts.tolerance()``
    transitions of the target (``max(2, 10 %)`` by default).
    """
    target, tol = opts.target_transitions, opts.tolerance()
    assert target is not None
    lam, rate, last_dir = opts.search_start, 2.0, 0
    lo_bound, hi_bound = opts.search_bounds
    log: list[dict] = []
    for attempt in range(1, opts.search_max_tries + 1):
        name = f"search:{attempt}"
        model, fit_result = penalise(phases, name, make_model, train, dev, cfg, opts, lam, verbose=False)
        structure = phases.record(name, "structure", lambda: prune(model, opts.epsilon).model.config.structure)
        n = sum(structure)
        log.append({"try": attempt, "reg_strength": lam, "transitions": n, "structure": list(structure)})
        if verbose:
            tqdm.write(
                f"search try {attempt:2d}: lambda {lam:.3g} -> {n} transitions "
                f"({format_structure(tuple(structure))}), target {target} +- {tol}",
                file=sys.stderr,
            )
        if abs(n - target) <= tol:  # the last finished phase: its weights are at hand
            return lam, prune(model, opts.epsilon), fit_result, log
        direction = 1 if n > target else -1  # +1: more penalty needed
        if last_dir and direction != last_dir:
            rate = (rate + 1) / 2
        last_dir = direction
        new = min(max(lam * rate if direction > 0 else lam / rate, lo_bound), hi_bound)
        if new == lam or math.isclose(rate, 1.0, rel_tol=1e-3):
            break
        lam = new
    got = ", ".join(f"{r['reg_strength']:.3g}->{r['transitions']}" for r in log[-4:])
    raise UserError(
        f"target_transitions {target}: not reached within +-{tol} after {len(log)} tries "
        f"(last lambda->transitions: {got}); try another target, reg_epochs or reg_strength"
    )


def learn_structure(
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
    phases: Phases | None = None,
) -> LearnResult:
    """Penalised phase (fixed or searched lambda) -> prune -> finetune without penalty.

    If every state is pruned, nothing is left to finetune: the classifier's bias is set to
    the log class prior of the training labels (the exact minimiser of the training loss
    of a model without WFSAs), so the model predicts the class prior.
    """
    phases = phases or Phases(verbose=verbose)
    search: list[dict] = []
    if opts.target_transitions is not None:
        lam, pruned, pen_fit, search = search_reg_strength(phases, make_model, train, dev, cfg, opts, verbose)
    else:
        lam = opts.reg_strength
        model, pen_fit = penalise(phases, "penalised", make_model, train, dev, cfg, opts, lam, verbose)
        pruned = prune(model, opts.epsilon)
    model, norms = pruned.model, pruned.group_norms
    before = tuple(len(s) for s in norms)
    if verbose:
        tqdm.write(f"pruned at {opts.epsilon}: {sum(before)} -> {model.config.transitions} transitions, "
                   f"structure {format_structure(model.config.structure)}", file=sys.stderr)
    if not model.config.structure:
        if verbose:
            tqdm.write("every state was pruned: nothing to finetune, the model predicts the class prior "
                       "of the training labels", file=sys.stderr)
        finetune = _class_prior(model, train, dev)
    else:
        finetune = phases.fit("finetune", model, train, dev, cfg, desc="finetune")
    return LearnResult(model, lam, before, norms, pen_fit, finetune, search)


@torch.no_grad()
def _class_prior(model: RationalClassifier, train: EncodedData, dev: EncodedData) -> FitResult:
    """Set the bias of a model without WFSAs to the log class prior of ``train``."""
    counts = torch.bincount(train.labels[train.labels >= 0], minlength=model.config.num_classes).double()
    prior = counts / counts.sum()
    model.classifier.bias.copy_(torch.log(prior.clamp_min(1e-12)).to(model.classifier.bias.dtype))
    acc = accuracy(model, dev) if len(dev) else float("nan")
    return FitResult(acc, 0, 0, 0.0, [])


__all__ = ["LearnResult", "StructureOptions", "learn_structure", "penalise", "search_reg_strength"]

"""Structure learning (SPEC section 2): penalised phase, pruning, finetuning, lambda search.

``learn_structure`` trains a model with the group-lasso penalty for a fixed number of
epochs (no LR schedule), prunes it at ``epsilon`` and finetunes the smaller model without
the penalty. ``search_reg_strength`` repeats the penalised phase with the authors' search
over lambda until the pruned model has the target number of transitions.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .errors import UserError
from .model import RationalClassifier
from .structure import PruneResult, format_structure, prune
from .train import EncodedData, FitResult, TrainConfig, fit


@dataclass
class StructureOptions:
    reg_strength: float = 0.0
    target_transitions: int | None = None
    reg_epochs: int = 30  # length of the penalised phase
    epsilon: float = 0.1
    search_start: float = 8e-6  # the authors' lambda search
    search_max_tries: int = 25
    search_bounds: tuple[float, float] = (1e-9, 1e2)

    def tolerance(self) -> int:
        assert self.target_transitions is not None
        return max(2, round(0.1 * self.target_transitions))


@dataclass
class LearnResult:
    model: RationalClassifier
    reg_strength: float
    structure_before_pruning: tuple[int, ...]
    group_norms: list[list[float]]
    penalised: FitResult
    finetune: FitResult
    search: list[dict] = field(default_factory=list)


def penalised_phase(
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    reg_strength: float,
    verbose: bool,
) -> tuple[PruneResult, FitResult]:
    """Train a fresh model with the penalty for ``opts.reg_epochs`` epochs, then prune it."""
    model = make_model()
    result = fit(
        model, train, dev, cfg, reg_strength=reg_strength, epochs=opts.reg_epochs,
        early_stopping=False, lr_schedule=False, keep_best=False,
        desc=f"penalised (lambda {reg_strength:.3g})", verbose=verbose,
    )
    return prune(model, opts.epsilon), result


def search_reg_strength(
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> tuple[float, PruneResult, FitResult, list[dict]]:
    """The authors' search: start at 8e-6, multiply (too many transitions) or divide (too
    few) by ``rate`` (2 at first); on each change of direction ``rate = (rate + 1) / 2``;
    stay within ``[1e-9, 1e2]``; give up after 25 tries. Each try is a full penalised run.
    Succeeds when the pruned model is within ``max(2, 10 %)`` of the target.
    """
    target, tol = opts.target_transitions, opts.tolerance()
    lam, rate, last_dir = opts.search_start, 2.0, 0
    lo_bound, hi_bound = opts.search_bounds
    log: list[dict] = []
    for attempt in range(1, opts.search_max_tries + 1):
        pruned, fit_result = penalised_phase(make_model, train, dev, cfg, opts, lam, verbose=False)
        n = pruned.model.config.transitions
        log.append({"try": attempt, "reg_strength": lam, "transitions": n,
                    "structure": list(pruned.model.config.structure)})
        if verbose:
            tqdm.write(
                f"search try {attempt:2d}: lambda {lam:.3g} -> {n} transitions "
                f"({format_structure(pruned.model.config.structure)}), target {target} +- {tol}",
                file=sys.stderr,
            )
        if abs(n - target) <= tol:
            return lam, pruned, fit_result, log
        direction = 1 if n > target else -1  # +1: more penalty needed
        if last_dir and direction != last_dir:
            rate = (rate + 1) / 2
        last_dir = direction
        new = lam * rate if direction > 0 else lam / rate
        new = min(max(new, lo_bound), hi_bound)
        if new == lam or math.isclose(rate, 1.0, rel_tol=1e-3):
            break
        lam = new
    got = ", ".join(f"{r['reg_strength']:.3g}->{r['transitions']}" for r in log[-4:])
    raise UserError(
        f"--target-transitions {target}: not reached within +-{tol} after {len(log)} tries "
        f"(last lambda->transitions: {got}); try another target, --reg-epochs or --reg-strength"
    )


def learn_structure(
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> LearnResult:
    """Penalised phase (fixed or searched lambda) -> prune -> finetune without penalty."""
    search: list[dict] = []
    if opts.target_transitions is not None:
        lam, pruned, pen_fit, search = search_reg_strength(make_model, train, dev, cfg, opts, verbose)
    else:
        lam = opts.reg_strength
        pruned, pen_fit = penalised_phase(make_model, train, dev, cfg, opts, lam, verbose)
    before = tuple(len(s) for s in pruned.group_norms)
    if verbose:
        tqdm.write(
            f"pruned at {opts.epsilon}: {sum(before)} -> {pruned.model.config.transitions} transitions, "
            f"structure {format_structure(pruned.model.config.structure)}",
            file=sys.stderr,
        )
    if not pruned.model.config.structure and verbose:
        tqdm.write("every state was pruned: the model predicts the class prior", file=sys.stderr)
    finetune = fit(pruned.model, train, dev, cfg, desc="finetune", verbose=verbose)
    return LearnResult(pruned.model, lam, before, pruned.group_norms, pen_fit, finetune, search)

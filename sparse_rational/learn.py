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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import PATH_SNAPSHOT, StructureOptions
from .errors import ParameterError
from .log import get_logger
from .model import RationalClassifier
from .phases import Phases
from .structure import PruneResult, format_structure, prune, surviving_structure
from .train import EncodedData, FitResult, TrainConfig, accuracy, batches_per_epoch

_log = get_logger(__name__)


@dataclass
class LearnResult:
    model: RationalClassifier
    reg_strength: float
    structure_before_pruning: tuple[int, ...]
    group_norms: list[list[float]]
    penalised: FitResult
    finetune: FitResult
    search: list[dict] = field(default_factory=list)


def penalise(
    phases: Phases,
    name: str,
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    reg_strength,
    verbose: bool = True,
    epoch_lines: bool = True,
    **kwargs,
) -> tuple[RationalClassifier, FitResult]:
    """A fresh model trained with the penalty for ``opts.reg_epochs`` epochs, no early
    stopping, no schedule, ending with its last weights (not its best dev epoch)."""
    model = make_model()
    desc = kwargs.pop("desc", f"penalised (lambda {reg_strength:.3g})" if not callable(reg_strength) else name)
    kwargs.setdefault("epochs", opts.reg_epochs)
    result = phases.fit(
        name,
        model,
        train,
        dev,
        cfg,
        reg_strength=reg_strength,
        early_stopping=False,
        lr_schedule=False,
        keep_best=False,
        desc=desc,
        verbose=verbose,
        penalty_update=opts.penalty_update,
        epsilon=opts.epsilon,
        epoch_lines=epoch_lines,
        **kwargs,
    )
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
        model, fit_result = penalise(
            phases,
            name,
            make_model,
            train,
            dev,
            cfg,
            opts,
            lam,
            verbose=verbose,
            epoch_lines=False,
            desc=f"search try {attempt} (lambda {lam:.3g})",
        )

        def pruned_structure(model: RationalClassifier = model) -> tuple[int, ...]:
            return prune(model, opts.epsilon).model.config.all_lengths

        structure = phases.record(name, "structure", pruned_structure)
        n = sum(structure)
        log.append({"try": attempt, "reg_strength": lam, "transitions": n, "structure": list(structure)})
        if verbose:
            _log.info(
                f"search try {attempt:2d}: lambda {lam:.3g} -> {n} transitions "
                f"({format_structure(tuple(structure))}), target {target} +- {tol}",
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
    raise ParameterError(
        "target_transitions",
        f"{target} not reached within +-{tol} after {len(log)} tries (last lambda->transitions: {got}); try "
        "another target, {reg_epochs}, {structure_search} path or {penalty_update} proximal",
        "reg_epochs",
        "structure_search",
        "penalty_update",
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
    if opts.structure_search == "path" and opts.targets:  # one target, reached along a path
        result = regularisation_path(phases, make_model, train, dev, cfg, opts, verbose)
        if result.missed:
            raise path_missed(result, opts)
        learned = result.models[opts.targets[0]]
        learned.search = result.path
        return learned
    if opts.target_transitions is not None:
        lam, pruned, pen_fit, search = search_reg_strength(phases, make_model, train, dev, cfg, opts, verbose)
    else:
        lam = opts.reg_strength
        model, pen_fit = penalise(phases, "penalised", make_model, train, dev, cfg, opts, lam, verbose)
        pruned = prune(model, opts.epsilon)
    model, norms = pruned.model, pruned.group_norms
    before = tuple(len(s) for s in norms)
    if verbose:
        _log.info(
            f"pruned at {opts.epsilon}: {sum(before)} -> {model.config.transitions} transitions, "
            f"structure {format_structure(model.config.structure_record())}",
        )
    finetune = _finetune(phases, "finetune", model, train, dev, cfg, verbose)
    return LearnResult(model, lam, before, norms, pen_fit, finetune, search)


@dataclass
class PathResult:
    """One regularisation path: a finetuned model per target reached, and the path itself."""

    models: dict[int, LearnResult]  # target -> the snapshot's pruned and finetuned model
    path: list[dict]  # per epoch: lambda, transitions, structure, dev accuracy
    snapshots: dict[int, dict]  # target -> step, epoch, lambda, transitions of the snapshot
    missed: list[int]  # targets the path jumped over or never reached
    penalised: FitResult


class _PathTracker:
    """Watches the surviving structure after every step of the path and snapshots, for each
    target, the point of the path nearest to it within the tolerance (the band the authors
    accepted: ``target +- 10`` in ``reproduce``), not merely the first point inside the band
    (which is always the band's upper edge on a path that sheds states one by one).

    A target is *settled* once the path reaches or passes it (``n <= target``): the nearest
    point seen so far becomes its snapshot (``path/t<target>``); a path that jumped from above
    the band to below it misses the target. Until then the nearest point so far is kept as
    ``path/near<target>`` (saved with every checkpoint, so a resumed path settles alike); a
    path that ends inside a band without reaching its target settles it at the nearest point
    (:meth:`finish`). Ties go to the earlier point (the smaller lambda)."""

    def __init__(self, phases: Phases, opts: StructureOptions, steps_per_epoch: int):
        self.phases, self.opts, self.steps_per_epoch = phases, opts, steps_per_epoch
        stashed = phases.stashed
        self.missed = [t for t in opts.targets if f"path/missed{t}" in stashed]
        self.left = [t for t in opts.targets if f"path/t{t}" not in stashed and t not in self.missed]
        # the nearest point so far of each unsettled target (from the checkpoint on a resume)
        self.nearest = {t: stashed[f"path/near{t}"][1]["transitions"] for t in self.left if f"path/near{t}" in stashed}

    def band(self, target: int) -> tuple[int, int]:
        tol = self.opts.tolerance(target)
        return max(0, target - tol), target + tol

    def after_step(self, model: RationalClassifier, step: int, lam: float) -> None:
        if not self.left:
            return
        structure = surviving_structure(model, self.opts.epsilon)
        n = sum(structure)
        info = {
            "step": step,
            "epoch": (step - 1) // self.steps_per_epoch + 1,
            "reg_strength": lam,
            "transitions": n,
            "structure": list(structure),
        }
        for target in list(self.left):
            low, high = self.band(target)
            if n > high:
                continue
            best = self.nearest.get(target)
            if n >= low and (best is None or abs(n - target) < abs(best - target)):
                self.nearest[target] = n
                here = {"target": target, **info, "band": [low, high], "rule": PATH_SNAPSHOT}
                self.phases.stash(f"path/near{target}", model, here)
            if n <= target:  # reached or passed: the path only moves away from it from here on
                self._settle(target, model, info)

    def _settle(self, target: int, model: RationalClassifier | None = None, info: dict | None = None) -> None:
        self.left.remove(target)
        if target in self.nearest:
            self.phases.rename_stash(f"path/near{target}", f"path/t{target}")
        else:  # one step went from above the band to below it: recorded, no snapshot
            assert model is not None and info is not None
            self.missed.append(target)
            self.phases.stash(
                f"path/missed{target}", model, {"target": target, **info, "band": list(self.band(target))}
            )

    def finish(self) -> None:
        """The path has ended: a target whose band it entered without reaching the target
        itself is settled at the nearest point; the others stay missed."""
        for target in [t for t in self.left if t in self.nearest]:
            self._settle(target)

    def done(self) -> bool:
        return not self.left


def regularisation_path(
    phases: Phases,
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> PathResult:
    """One penalised run for every target: after ``path_warmup`` epochs without penalty,
    lambda grows geometrically, step by step (``path_start * path_growth ** (step /
    steps_per_epoch)``), the model warm-started all along; for each target the model is
    snapshotted at the step whose surviving structure is nearest to the target within its
    tolerance (:class:`_PathTracker`); each snapshot is then pruned and finetuned (phase
    ``finetune:t<target>``). The run ends when the smallest target is reached or passed, or
    after ``reg_epochs`` epochs."""
    steps = batches_per_epoch(train, cfg)
    tracker = _PathTracker(phases, opts, steps)

    warmup = opts.path_warmup * steps

    def schedule(step: int) -> float:
        return 0.0 if step < warmup else opts.path_start * opts.path_growth ** ((step - warmup) / steps)

    _, pen_fit = penalise(
        phases,
        "path",
        make_model,
        train,
        dev,
        cfg,
        opts,
        schedule,
        verbose=verbose,
        desc="path",
        after_step=tracker.after_step,
        stop=tracker.done,
        epochs=opts.path_warmup + opts.reg_epochs,
    )
    tracker.finish()
    missed = sorted(set(tracker.missed) | set(tracker.left), reverse=True)
    path = [
        {
            "epoch": h.epoch,
            "reg_strength": h.reg_strength,
            "transitions": h.transitions,
            "structure": h.structure,
            "dev_accuracy": h.dev_accuracy,
            "loss": h.loss,
        }
        for h in pen_fit.history
    ]
    models: dict[int, LearnResult] = {}
    snapshots: dict[int, dict] = {}
    for target in opts.targets:
        if f"path/t{target}" not in phases.stashed:
            continue
        model = make_model()
        snapshots[target] = info = phases.load_stashed(model, f"path/t{target}")
        pruned = prune(model, opts.epsilon)
        if verbose:
            _log.info(
                f"target {target}: snapshot at epoch {info['epoch']} (lambda {info['reg_strength']:.3g}), "
                f"{pruned.model.config.transitions} transitions, structure "
                f"{format_structure(pruned.model.config.structure_record())}",
            )
        finetune = _finetune(phases, f"finetune:t{target}", pruned.model, train, dev, cfg, verbose, keep=True)
        models[target] = LearnResult(
            pruned.model,
            info["reg_strength"],
            tuple(len(g) for g in pruned.group_norms),
            pruned.group_norms,
            pen_fit,
            finetune,
        )
    return PathResult(models, path, snapshots, missed, pen_fit)


def _finetune(
    phases: Phases,
    name: str,
    model: RationalClassifier,
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    verbose: bool,
    keep: bool = False,
) -> FitResult:
    """Finetune a pruned model without the penalty (or set it to the class prior if empty)."""
    if not model.config.transitions:
        if verbose:
            _log.info(
                "every state was pruned: nothing to finetune, the model predicts the class prior "
                "of the training labels",
            )
        return _class_prior(model, train, dev)
    return phases.fit(name, model, train, dev, cfg, desc=name, keep=keep)


@torch.no_grad()
def _class_prior(model: RationalClassifier, train: EncodedData, dev: EncodedData) -> FitResult:
    """Set the bias of a model without WFSAs to the log class prior of ``train``."""
    counts = torch.bincount(train.labels[train.labels >= 0], minlength=model.config.num_classes).double()
    prior = counts / counts.sum()
    model.classifier.bias.copy_(torch.log(prior.clamp_min(1e-12)).to(model.classifier.bias.dtype))
    acc = accuracy(model, dev) if len(dev) else float("nan")
    return FitResult(acc, 0, 0, 0.0, [])


def path_missed(result: PathResult | Any, opts: StructureOptions) -> ParameterError:
    """The one-line error of a path that missed targets (the others are kept)."""
    last = result.path[-1] if result.path else {}
    return ParameterError(
        "target_transitions",
        f"the path missed {', '.join(map(str, result.missed))}: it went from more to fewer transitions within "
        f"one step, or ended at {last.get('transitions')} transitions after {len(result.path)} epochs (lambda "
        f"{last.get('reg_strength') or 0:.3g}); try a smaller {{path_growth}} or more {{reg_epochs}}",
        "path_growth",
        "reg_epochs",
    )


__all__ = [
    "PathResult",
    "path_missed",
    "regularisation_path",
    "LearnResult",
    "StructureOptions",
    "learn_structure",
    "penalise",
    "search_reg_strength",
]

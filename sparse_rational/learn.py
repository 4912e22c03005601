"""Structure learning: penalise -> prune -> finetune (docs/DESIGN.md, "Structure learning").

``learn_structure`` trains a model with the group-lasso penalty for a fixed number of
epochs (no LR schedule), prunes it at ``epsilon`` and finetunes the smaller model without
the penalty. With a target size, ``search_reg_strength`` repeats the penalised phase with
the authors' search over lambda until the pruned model has the target number of
transitions; with several targets, ``regularisation_path`` grows lambda along one
penalised run and snapshots the model near each target. Each of the three lambda
strategies (fixed, search, path) gives a :class:`Penalised` model, and one shared tail
prunes and finetunes it (:func:`prune_and_finetune`). Every training run goes through the
phase runner (:mod:`.phases`), which checkpoints and resumes; nothing here knows about
checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .checkpoint import load_weights, snapshot_weights
from .config import PATH_SNAPSHOT, StructureOptions
from .errors import ParameterError
from .log import get_logger
from .model import RationalClassifier
from .phases import Phases
from .structure import format_structure, prune, surviving_structure
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


@dataclass
class Penalised:
    """What a lambda strategy gives the shared tail: a model trained with the penalty at
    ``reg_strength`` (the search: the try that reached the target; the path: a snapshot)."""

    reg_strength: float
    model: RationalClassifier
    fit: FitResult
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
) -> Penalised:
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
    return Penalised(reg_strength if not callable(reg_strength) else 0.0, model, result)


def search_reg_strength(
    phases: Phases,
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> Penalised:
    """The authors' search: start at 8e-6, multiply (too many transitions) or divide (too
    few) by ``rate`` (2 at first); on each change of direction ``rate = (rate + 1) / 2``;
    stay within ``[1e-9, 1e2]``; give up after 25 tries. Each try is a full penalised run
    (phase ``search:k``). Succeeds when the pruned model is within ``opts.tolerance()``
    transitions of the target (``max(2, 10 %)`` by default): that try's model, its lambda
    and the log of every try.
    """
    target, tol = opts.targets[0], opts.tolerance()
    lam, rate, last_dir = opts.search_start, 2.0, 0
    lo_bound, hi_bound = opts.search_bounds
    log: list[dict] = []
    for attempt in range(1, opts.search_max_tries + 1):
        tried = penalise(
            phases,
            f"search:{attempt}",
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
        structure = surviving_structure(tried.model, opts.epsilon)
        n = sum(structure)
        log.append({"try": attempt, "reg_strength": lam, "transitions": n, "structure": list(structure)})
        if verbose:
            _log.info(
                f"search try {attempt:2d}: lambda {lam:.3g} -> {n} transitions "
                f"({format_structure(tuple(structure))}), target {target} +- {tol}",
            )
        if abs(n - target) <= tol:
            tried.search = log
            return tried
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
    """Penalised phase (a fixed lambda, the authors' search for one, or a path to the
    target) -> prune -> finetune without penalty.

    If every state is pruned, nothing is left to finetune: the classifier's bias is set to
    the log class prior of the training labels (the exact minimiser of the training loss
    of a model without WFSAs), so the model predicts the class prior.
    """
    phases = phases or Phases(verbose=verbose)
    if opts.structure_search == "path" and opts.targets:  # one target, reached along a path
        result = regularisation_path(phases, make_model, train, dev, cfg, opts, verbose)
        if result.missed:
            raise path_missed(result, opts)
        learned = result.models[opts.targets[0]]
        learned.search = result.path
        return learned
    if opts.target_transitions is not None:
        penalised = search_reg_strength(phases, make_model, train, dev, cfg, opts, verbose)
    else:
        penalised = penalise(phases, "penalised", make_model, train, dev, cfg, opts, opts.reg_strength, verbose)
    return prune_and_finetune(phases, "finetune", penalised, train, dev, cfg, opts, verbose)


def prune_and_finetune(
    phases: Phases,
    name: str,
    penalised: Penalised,
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
) -> LearnResult:
    """The shared tail of every lambda strategy: prune the penalised model at ``epsilon``,
    then finetune the smaller model without the penalty as phase ``name`` (a model left
    without WFSAs is set to the class prior instead)."""
    pruned = prune(penalised.model, opts.epsilon)
    model, norms = pruned.model, pruned.group_norms
    before = tuple(len(s) for s in norms)
    if verbose:
        _log.info(
            f"pruned at {opts.epsilon}: {sum(before)} -> {model.config.transitions} transitions, "
            f"structure {format_structure(model.config.structure_record())}",
        )
    finetune = _finetune(phases, name, model, train, dev, cfg, verbose)
    return LearnResult(model, penalised.reg_strength, before, norms, penalised.fit, finetune, penalised.search)


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
    point seen so far becomes its snapshot (:attr:`snapshots`); a path that jumped from
    above the band to below it misses the target (:attr:`missed`). Until then the nearest
    point so far is kept in :attr:`near`; a path that ends inside a band without reaching
    its target settles it at the nearest point (:meth:`finish`). Ties go to the earlier
    point (the smaller lambda). Its state belongs to the path's phase
    (:class:`~sparse_rational.phases.Stateful`): saved with it, restored on resume."""

    def __init__(self, opts: StructureOptions, steps_per_epoch: int):
        self.opts, self.steps_per_epoch = opts, steps_per_epoch
        self.snapshots: dict[int, tuple[dict[str, torch.Tensor], dict]] = {}  # target -> (weights, info)
        self.near: dict[int, tuple[dict[str, torch.Tensor], dict]] = {}  # unsettled target -> nearest so far
        self.missed: dict[int, dict] = {}  # target -> the step that jumped over its band

    @property
    def left(self) -> list[int]:
        """The targets not yet settled nor missed."""
        return [t for t in self.opts.targets if t not in self.snapshots and t not in self.missed]

    def band(self, target: int) -> tuple[int, int]:
        tol = self.opts.tolerance(target)
        return max(0, target - tol), target + tol

    def after_step(self, model: RationalClassifier, step: int, lam: float) -> None:
        left = self.left
        if not left:
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
        for target in left:
            low, high = self.band(target)
            if n > high:
                continue
            best = self.near.get(target)
            if n >= low and (best is None or abs(n - target) < abs(best[1]["transitions"] - target)):
                here = {"target": target, **info, "band": [low, high], "rule": PATH_SNAPSHOT}
                self.near[target] = (snapshot_weights(model), here)
            if n <= target:  # reached or passed: the path only moves away from it from here on
                self._settle(target, info)

    def _settle(self, target: int, info: dict | None = None) -> None:
        if target in self.near:
            self.snapshots[target] = self.near.pop(target)
        else:  # one step went from above the band to below it: recorded, no snapshot
            assert info is not None
            self.missed[target] = {"target": target, **info, "band": list(self.band(target))}

    def finish(self) -> None:
        """The path has ended: a target whose band it entered without reaching the target
        itself is settled at the nearest point; the others stay missed."""
        for target in [t for t in self.left if t in self.near]:
            self._settle(target)

    def done(self) -> bool:
        return not self.left

    # -- Stateful: saved with the path's phase -----------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {
            f"{kind}{t}/{k}": v
            for kind, group in (("t", self.snapshots), ("near", self.near))
            for t, (weights, _) in group.items()
            for k, v in weights.items()
        }
        info = {
            "snapshots": {str(t): i for t, (_, i) in self.snapshots.items()},
            "near": {str(t): i for t, (_, i) in self.near.items()},
            "missed": {str(t): i for t, i in self.missed.items()},
        }
        return tensors, info

    def load_state_dict(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        def group(kind: str) -> dict[int, tuple[dict[str, torch.Tensor], dict]]:
            out: dict[int, tuple[dict[str, torch.Tensor], dict]] = {}
            for t, i in info[kind].items():
                prefix = f"{'t' if kind == 'snapshots' else kind}{int(t)}/"
                weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                out[int(t)] = (weights, dict(i))
            return out

        self.snapshots, self.near = group("snapshots"), group("near")
        self.missed = {int(t): dict(i) for t, i in info["missed"].items()}


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
    tolerance (:class:`_PathTracker`); each snapshot then goes through the shared tail
    (:func:`prune_and_finetune`, phase ``finetune:t<target>``). The run ends when the
    smallest target is reached or passed, or after ``reg_epochs`` epochs."""
    steps = batches_per_epoch(train, cfg)
    tracker = _PathTracker(opts, steps)

    warmup = opts.path_warmup * steps

    def schedule(step: int) -> float:
        return 0.0 if step < warmup else opts.path_start * opts.path_growth ** ((step - warmup) / steps)

    pen = penalise(
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
        stateful=(tracker,),
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
        for h in pen.fit.history
    ]
    models: dict[int, LearnResult] = {}
    snapshots: dict[int, dict] = {}
    for target in opts.targets:
        if target not in tracker.snapshots:
            continue
        weights, info = tracker.snapshots[target]
        model = make_model()
        load_weights(model, weights, f"the path's snapshot for {target}")
        snapshots[target] = info
        if verbose:
            _log.info(
                f"target {target}: snapshot at epoch {info['epoch']} (lambda {info['reg_strength']:.3g}), "
                f"{info['transitions']} transitions",
            )
        snapshot = Penalised(info["reg_strength"], model, pen.fit)
        models[target] = prune_and_finetune(phases, f"finetune:t{target}", snapshot, train, dev, cfg, opts, verbose)
    return PathResult(models, path, snapshots, missed, pen.fit)


def _finetune(
    phases: Phases,
    name: str,
    model: RationalClassifier,
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    verbose: bool,
) -> FitResult:
    """Finetune a pruned model without the penalty (or set it to the class prior if empty)."""
    if not model.config.transitions:
        if verbose:
            _log.info(
                "every state was pruned: nothing to finetune, the model predicts the class prior "
                "of the training labels",
            )
        return _class_prior(model, train, dev)
    return phases.fit(name, model, train, dev, cfg, desc=name)


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
    "Penalised",
    "PathResult",
    "path_missed",
    "regularisation_path",
    "LearnResult",
    "StructureOptions",
    "learn_structure",
    "penalise",
    "prune_and_finetune",
    "search_reg_strength",
]

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
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm

from .errors import UserError
from .model import RationalClassifier
from .structure import PruneResult, format_structure, prune
from .train import EncodedData, EpochLog, FitResult, TrainConfig, accuracy, fit


@dataclass
class StructureOptions:
    reg_strength: float = 0.0
    target_transitions: int | None = None
    reg_epochs: int = 30  # length of the penalised phase
    epsilon: float = 0.1
    search_start: float = 8e-6  # the authors' lambda search
    search_max_tries: int = 25
    search_bounds: tuple[float, float] = (1e-9, 1e2)

    search_tolerance: int | None = None  # None: max(2, 10 % of the target); the authors used 10

    def tolerance(self) -> int:
        assert self.target_transitions is not None
        if self.search_tolerance is not None:
            return self.search_tolerance
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
    checkpoint=None,
    phase: str = "penalised",
) -> tuple[PruneResult, FitResult]:
    """Train a fresh model with the penalty for ``opts.reg_epochs`` epochs, then prune it."""
    model = make_model()
    result = fit(
        model, train, dev, cfg, reg_strength=reg_strength, epochs=opts.reg_epochs,
        early_stopping=False, lr_schedule=False, keep_best=False,
        desc=f"penalised (lambda {reg_strength:.3g})", verbose=verbose,
        checkpoint=checkpoint, phase=phase,
    )
    return prune(model, opts.epsilon), result


def search_reg_strength(
    make_model: Callable[[], RationalClassifier],
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    opts: StructureOptions,
    verbose: bool = True,
    checkpoint=None,
) -> tuple[float, PruneResult, FitResult, list[dict]]:
    """The authors' search: start at 8e-6, multiply (too many transitions) or divide (too
    few) by ``rate`` (2 at first); on each change of direction ``rate = (rate + 1) / 2``;
    stay within ``[1e-9, 1e2]``; give up after 25 tries. Each try is a full penalised run.
    Succeeds when the pruned model is within ``opts.tolerance()`` transitions of the target
    (``max(2, 10 %)`` by default).

    With a ``checkpoint``, try ``k`` is checkpointed as phase ``search:k`` together with the
    search so far; a resumed search continues inside the try it was in.
    """
    target, tol = opts.target_transitions, opts.tolerance()
    lam, rate, last_dir = opts.search_start, 2.0, 0
    lo_bound, hi_bound = opts.search_bounds
    log: list[dict] = []
    first = 1
    if checkpoint is not None and (checkpoint.pending_phase or "").startswith("search:"):
        pending = checkpoint.pending
        try:
            saved = pending.context["search"]
            first, lam, rate, last_dir = int(saved["try"]), float(saved["lambda"]), float(saved["rate"]), \
                int(saved["last_dir"])
            log = [dict(r) for r in saved["log"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise pending.bad(f"bad lambda-search state ({exc})") from None
        if pending.phase != f"search:{first}" or len(log) != first - 1:
            raise pending.bad(f"lambda-search state of try {first} in phase {pending.phase}")
    for attempt in range(first, opts.search_max_tries + 1):
        if checkpoint is not None:
            checkpoint.context = {"search": {"try": attempt, "lambda": lam, "rate": rate, "last_dir": last_dir,
                                             "log": log}}
        pruned, fit_result = penalised_phase(make_model, train, dev, cfg, opts, lam, verbose=False,
                                             checkpoint=checkpoint, phase=f"search:{attempt}")
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
    checkpoint=None,
) -> LearnResult:
    """Penalised phase (fixed or searched lambda) -> prune -> finetune without penalty.

    If every state is pruned, nothing is left to finetune: the classifier's bias is set to
    the log class prior of the training labels (the exact minimiser of the training loss
    of a model without WFSAs), so the model predicts the class prior.

    ``checkpoint``: every epoch of every phase is checkpointed (see :func:`fit`); a
    resumed run skips the phases it had finished. Finetuning checkpoints carry the pruned
    structure, so the smaller model is rebuilt without redoing the penalised phase.
    """
    search: list[dict] = []
    if checkpoint is not None and checkpoint.pending_phase == "finetune":
        model, lam, before, norms, pen_fit, search = _resume_finetune(make_model, checkpoint)
    else:
        if opts.target_transitions is not None:
            lam, pruned, pen_fit, search = search_reg_strength(make_model, train, dev, cfg, opts, verbose, checkpoint)
        else:
            lam = opts.reg_strength
            pruned, pen_fit = penalised_phase(make_model, train, dev, cfg, opts, lam, verbose, checkpoint)
        model, norms = pruned.model, pruned.group_norms
        before = tuple(len(s) for s in norms)
        if verbose:
            tqdm.write(
                f"pruned at {opts.epsilon}: {sum(before)} -> {model.config.transitions} transitions, "
                f"structure {format_structure(model.config.structure)}",
                file=sys.stderr,
            )
    if checkpoint is not None:
        from .checkpoint import to_jsonable

        checkpoint.context = {"learn": {"structure": list(model.config.structure), "reg_strength": lam,
                                        "before": list(before), "group_norms": norms, "search": search,
                                        "penalised": to_jsonable(pen_fit)}}
    if not model.config.structure:
        if verbose:
            tqdm.write("every state was pruned: nothing to finetune, the model predicts the class prior "
                       "of the training labels", file=sys.stderr)
        finetune = _class_prior(model, train, dev)
    else:
        finetune = fit(model, train, dev, cfg, desc="finetune", verbose=verbose, checkpoint=checkpoint,
                       phase="finetune")
    return LearnResult(model, lam, before, norms, pen_fit, finetune, search)


@torch.no_grad()
def _class_prior(model: RationalClassifier, train: EncodedData, dev: EncodedData) -> FitResult:
    """Set the bias of a model without WFSAs to the log class prior of ``train``."""
    counts = torch.bincount(train.labels[train.labels >= 0], minlength=model.config.num_classes).double()
    prior = counts / counts.sum()
    model.classifier.bias.copy_(torch.log(prior.clamp_min(1e-12)).to(model.classifier.bias.dtype))
    acc = accuracy(model, dev) if len(dev) else float("nan")
    return FitResult(acc, 0, 0, 0.0, [])


def _resume_finetune(make_model, checkpoint):
    """The pruned model (weights still to be restored by :func:`fit`) and the results of
    the penalised phase, from a finetuning checkpoint."""
    pending = checkpoint.pending
    try:
        ctx = pending.context["learn"]
        structure = tuple(int(n) for n in ctx["structure"])
        lam, before = float(ctx["reg_strength"]), tuple(int(n) for n in ctx["before"])
        norms = [[float(x) for x in g] for g in ctx["group_norms"]]
        search = [dict(r) for r in ctx["search"]]
        p = ctx["penalised"]
        pen_fit = FitResult(float(p["best_dev_accuracy"]), int(p["best_epoch"]), int(p["epochs_run"]),
                            float(p["seconds"]), [EpochLog(**h) for h in p["history"]])
        if not structure or any(n < 1 for n in structure) or len(structure) > len(before) \
                or sum(structure) > sum(before):
            raise ValueError(f"structure {list(structure)} cannot come from {list(before)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise pending.bad(f"bad finetuning state ({exc})") from None
    full = make_model()
    model = RationalClassifier(replace(full.config, structure=structure), full.embeddings, impl=full.wfsa.impl)
    model.to(device=full.wfsa.w.device)
    return model, lam, before, norms, pen_fit, search

"""The training loop: Adam, length-bucketed mini-batches, clipping, early stopping, LR schedule.

``fit`` trains one model on encoded documents; the loss is mean cross-entropy plus
``reg_strength * sum_s ||g_s||_2`` (group lasso) when ``reg_strength > 0``. It is a plain
loop: checkpointing and resume belong to the phase runner (:mod:`.phases`), which hands
``fit`` the state to continue from and a callback for the end of every epoch.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checkpoint import (
    model_tensors,
    numpy_rng_state,
    optimizer_state,
    restore_module_state,
    restore_numpy_rng,
    restore_optimizer,
    restore_torch_rng,
    to_jsonable,
)
from .config import TrainConfig
from .embeddings.rows import StaticRows
from .errors import ParameterError, TrainingDiverged
from .log import get_logger, progress_disable
from .model import RationalClassifier
from .structure import proximal_step_, surviving_structure

_log = get_logger(__name__)


@dataclass
class EncodedData:
    """Documents as token-id tensors (``<s>`` and ``</s>`` included) and class indices."""

    docs: list[Tensor]
    labels: Tensor  # [n] long; -1: no label (a transfer text)
    soft: Tensor | None = None  # [n, C]: a teacher's probabilities, already softened by ``temperature``
    soft_weight: float = 0.0  # the teacher's share of the loss of a labelled text (see distillation_loss)
    temperature: float = 1.0

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(d) for d in self.docs), dtype=np.int64, count=len(self.docs))


@dataclass
class EpochLog:
    epoch: int
    loss: float  # mean training cross-entropy
    penalty: float  # mean group-lasso sum (0 without a penalty)
    dev_accuracy: float | None  # None without a dev set
    lr: float
    seconds: float
    train_loss: float | None = None  # early stopping follows this when there is no dev set
    reg_strength: float | None = None  # lambda at the end of the epoch (penalised phases)
    transitions: int | None = None  # transitions surviving pruning at the end of the epoch
    structure: list[int] | None = None
    dev_loss: float | None = None


@dataclass
class FitResult:
    best_dev_accuracy: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[EpochLog] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs_run, 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FitResult:
        return cls(
            float(d["best_dev_accuracy"]),
            int(d["best_epoch"]),
            int(d["epochs_run"]),
            float(d["seconds"]),
            [EpochLog(**h) for h in d["history"]],
        )


def bucket_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, max_tokens: int = 0
) -> list[np.ndarray]:
    """Mini-batches of documents of similar length (little padding), in random order.

    With ``rng`` the documents are sorted by length plus a little noise and the batches
    shuffled; without it, batches are in sorted order (deterministic, for evaluation).
    ``max_tokens > 0``: a batch whose padded size (documents x longest) exceeds it is split
    into smaller ones (a very long document ends up alone), which bounds the memory of a
    batch; batches within the budget are left exactly as they were.
    """
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.argsort(lengths + rng.uniform(0, 0.25 * max(lengths.std(), 1.0), len(lengths)), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if max_tokens > 0:
        split = []
        for batch in batches:
            if len(batch) * int(lengths[batch].max(initial=0)) <= max_tokens:
                split.append(batch)
                continue
            start, longest = 0, 0
            for k, i in enumerate(batch):  # greedy: as many documents as the budget holds
                longest_with = max(longest, int(lengths[i]))
                if k > start and (k - start + 1) * longest_with > max_tokens:
                    split.append(batch[start:k])
                    start, longest_with = k, int(lengths[i])
                longest = longest_with
            split.append(batch[start:])
        batches = split
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(docs: list[Tensor], idx: np.ndarray, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Right-padded ids ``[B, T]`` (pad id 0) and the mask ``[B, T]`` (True at tokens)."""
    seqs = [docs[i] for i in idx]
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = s
        mask[k, : len(s)] = True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def predict_proba(
    model: RationalClassifier,
    data: EncodedData,
    batch_size: int = 128,
    batch_tokens: int = 2**19,
    rows: Any = None,
) -> Tensor:
    """Class probabilities ``[n, C]`` in the order of ``data.docs`` (row ids of ``rows``,
    default the model's own, see :meth:`RationalClassifier.forward`).

    Documents are read whole (no gradient is kept, so memory grows with the length of the
    longest document only linearly, with a small constant); batches hold at most
    ``batch_tokens`` padded tokens.
    """
    was_training = model.training
    model.eval()
    device = model.classifier.bias.device
    out = torch.empty(len(data), model.config.num_classes)
    for idx in bucket_batches(data.lengths, batch_size, None, batch_tokens):
        ids, mask = collate(data.docs, idx, device)
        out[torch.as_tensor(idx)] = torch.softmax(model(ids, mask, rows).float(), -1).cpu()
    model.train(was_training)
    return out


def accuracy(model: RationalClassifier, data: EncodedData, rows: Any = None) -> float:
    return evaluate(model, data, rows)[0]


def evaluate(model: RationalClassifier, data: EncodedData, rows: Any = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on labelled ``data`` (NaN, NaN when empty); a label
    the model does not know (-1) counts as an error and is left out of the loss."""
    if len(data) == 0:
        return float("nan"), float("nan")
    probs = predict_proba(model, data, rows=rows)
    acc = float((probs.argmax(-1) == data.labels).float().mean())
    known = data.labels >= 0
    if not bool(known.any()):
        return acc, float("nan")
    picked = probs[known].gather(1, data.labels[known][:, None]).clamp_min(1e-12)
    return acc, float(-picked.log().mean())


def soften(probabilities: Tensor, temperature: float) -> Tensor:
    """``q_T = softmax(log p / T)``: a teacher's probabilities at temperature ``T``."""
    return torch.softmax(probabilities.double().clamp_min(1e-12).log() / temperature, -1).float()


def distillation_loss(logits: Tensor, labels: Tensor, soft: Tensor, weight: float, temperature: float) -> Tensor:
    """Mean over the batch of ``(1 - a) CE(y, z) + a T^2 CE(q_T, z / T)`` for a labelled text
    and ``T^2 CE(q_T, z / T)`` for one without a label (``y = -1``), with ``a = weight``
    (Hinton et al. 2015; the ``T^2`` keeps the soft term's gradients at the scale of the
    hard one's)."""
    logp = torch.log_softmax(logits.float() / temperature, -1)
    soft_ce = -(soft * logp).sum(-1) * temperature**2
    labelled = labels >= 0
    hard = nn.functional.cross_entropy(logits.float(), labels.clamp_min(0), reduction="none")
    per_text = torch.where(labelled, (1 - weight) * hard + weight * soft_ce, soft_ce)
    return per_text.mean()


def batches_per_epoch(data: EncodedData, cfg: TrainConfig) -> int:
    """How many optimizer steps one epoch of :func:`fit` takes on ``data``."""
    docs = truncate_docs(data.docs, cfg.max_tokens)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    return len(bucket_batches(lengths, cfg.batch_size, None, cfg.batch_tokens))


def truncate_docs(docs: list[Tensor], max_tokens: int) -> list[Tensor]:
    """Documents cut to their first ``max_tokens - 1`` tokens plus their last one (``</s>``)."""
    if max_tokens <= 0:
        return docs
    keep = max(max_tokens, 2)
    return [d if len(d) <= keep else torch.cat([d[: keep - 1], d[-1:]]) for d in docs]


@dataclass(eq=False)
class FitState:
    """What :func:`fit` carries from one epoch to the next: the model, Adam, the schedule, the
    batch generator and early stopping. Its owner (the phase runner, :mod:`.phases`) saves it
    at the end of every epoch (:meth:`state_dict`) and, to resume, builds it again and loads
    a checkpoint into it (:meth:`load_state_dict`) before handing it to :func:`fit`, which
    then continues after :attr:`epoch` and holds no resume logic of its own."""

    model: RationalClassifier
    opt: torch.optim.Optimizer
    sched: Any
    rng: np.random.Generator
    rows: Tensor | None = None  # tuned word vectors: their own Adam group and clipping
    best_state: dict | None = None
    best_acc: float = -math.inf
    best_epoch: int = 0
    bad: int = 0
    history: list[EpochLog] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds before this process took over

    @classmethod
    def start(cls, model: RationalClassifier, cfg: TrainConfig) -> FitState:
        """The state before the first epoch: seeded generators, a new Adam and schedule."""
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        emb = model.embeddings
        rows = emb.weight if isinstance(emb, StaticRows) and emb.tuned else None
        params = [p for p in model.parameters() if p.requires_grad and p is not rows]
        groups: list[dict] = [{"params": params}]
        if rows is not None:  # tuned word vectors: their own learning rate, no weight decay (the pull instead)
            groups.append({"params": [rows], "lr": cfg.vector_lr, "weight_decay": 0.0})
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=cfg.lr_patience)
        return cls(model, opt, sched, rng, rows)

    @property
    def epoch(self) -> int:
        """The epochs done."""
        return len(self.history)

    def state_dict(self) -> tuple[dict, dict]:
        """The tensors and JSON of a checkpoint at the end of an epoch (see :mod:`.checkpoint`)."""
        opt_tensors, opt_json = optimizer_state(self.opt)
        tensors = {**model_tensors(self.model, "model."), **opt_tensors, "rng.torch": torch.get_rng_state()}
        device = self.model.classifier.bias.device
        if device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
        if self.best_state is not None:
            tensors.update(model_tensors(self.model, "best.", self.best_state))
        state = {
            "optimizer": to_jsonable(opt_json),
            "scheduler": to_jsonable(self.sched.state_dict()),
            "numpy_rng": numpy_rng_state(self.rng),
            "fit": {
                "best_acc": self.best_acc,
                "best_epoch": self.best_epoch,
                "bad": self.bad,
                "elapsed": self.elapsed,
                "history": to_jsonable(self.history),
                "has_best": self.best_state is not None,
            },
        }
        return tensors, state

    def load_state_dict(self, ck: Any) -> None:
        """Load a checkpoint taken at the end of an epoch into the model, Adam, the schedule,
        both generators and early stopping."""
        model = self.model
        model.load_state_dict(restore_module_state(model, ck, "model."))
        restore_optimizer(self.opt, ck)
        try:
            self.sched.load_state_dict(ck.state["scheduler"])
            f = ck.state["fit"]
            history = [EpochLog(**h) for h in f["history"]]
            best_acc, best_epoch = float(f["best_acc"]), int(f["best_epoch"])
            bad, elapsed = int(f["bad"]), float(f["elapsed"])
            has_best = bool(f["has_best"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ck.bad(f"bad training state ({exc})") from None
        if len(history) != ck.epoch:
            raise ck.bad(f"history of {len(history)} epochs at epoch {ck.epoch}")
        self.best_state = None
        if has_best:
            self.best_state = {k: v.clone() for k, v in restore_module_state(model, ck, "best.").items()}
        restore_numpy_rng(self.rng, ck)
        restore_torch_rng(ck, model.classifier.bias.device)
        self.best_acc, self.best_epoch, self.bad = best_acc, best_epoch, bad
        self.history, self.elapsed = history, elapsed


def _selection_score(history: list[EpochLog], select_on: str) -> float:
    """The number early stopping, model selection and the schedule follow (larger is
    better): dev accuracy (``"accuracy"``), minus the dev cross-entropy (``"loss"``: smooth,
    less noisy on a small dev set than accuracy), or the dev accuracy averaged over the last
    3 epochs (``"smoothed"``); without a dev set, minus the training loss."""
    last = history[-1]
    if last.dev_accuracy is None:
        return -last.loss
    if select_on == "loss":
        return -last.dev_loss if last.dev_loss is not None and math.isfinite(last.dev_loss) else -math.inf
    if select_on == "smoothed":
        recent = [h.dev_accuracy for h in history[-3:] if h.dev_accuracy is not None]
        return sum(recent) / len(recent)
    return last.dev_accuracy


def _diverged(what: str, desc: str, epoch: int) -> Exception:
    return TrainingDiverged(f"{desc} epoch {epoch}: {what}; training stopped; try a smaller lr or clip")


EpochCallback = Callable[[FitState], None]  # the state at the end of each epoch


def fit(
    model: RationalClassifier,
    train: EncodedData,
    dev: EncodedData,
    cfg: TrainConfig,
    *,
    reg_strength: float = 0.0,
    epochs: int | None = None,
    early_stopping: bool = True,
    lr_schedule: bool | None = None,
    keep_best: bool = True,
    desc: str = "train",
    verbose: bool = True,
    state: FitState | None = None,
    on_epoch: EpochCallback | None = None,
    penalty_update: str = "gradient",
    epsilon: float | None = None,
    after_step: Callable[[RationalClassifier, int, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
    epoch_lines: bool = True,
    on_log: Callable[[EpochLog], None] | None = None,
) -> FitResult:
    """Train ``model`` in place.

    ``early_stopping``: stop after ``cfg.patience`` epochs without a better dev accuracy.
    ``keep_best``: end with the weights of the best dev epoch (else: the last epoch, as
    the penalised phase of structure learning wants). ``lr_schedule`` defaults to
    ``cfg.lr_schedule`` and is meant to be off while learning structure.

    The penalty: ``reg_strength`` is lambda, a number or a function of the global step
    (a regularisation path). ``penalty_update="gradient"`` adds ``lambda * sum_s ||g_s||``
    to the loss (the paper); ``"proximal"`` leaves it out of the loss and applies the
    group soft-threshold after every optimizer step (:func:`~sparse_rational.structure.proximal_step_`),
    which makes removed groups exactly zero. ``epsilon`` (the pruning threshold) adds the
    surviving structure to every epoch's log and progress bar. ``after_step(model, step,
    lambda)`` is called after every update; training ends early once ``stop()`` is true.
    ``on_log(epoch_log)`` receives each epoch's :class:`EpochLog` (the user's callbacks).
    ``verbose`` shows a progress bar per epoch and, with ``epoch_lines``, a line per epoch.

    ``state``: a :class:`FitState` of this same call (default: a new one,
    :meth:`FitState.start`); training continues after its epochs exactly as it would have
    gone on (same batches, same dropout masks, same metrics). ``on_epoch(state)`` receives
    it at the end of every epoch (:meth:`FitState.state_dict` is what a checkpoint stores). A NaN or
    infinite loss, gradient or weight raises :class:`~sparse_rational.errors.TrainingDiverged`.
    Training documents are cut to ``cfg.max_tokens`` tokens and batches to
    ``cfg.batch_tokens`` padded tokens (memory stays bounded whatever the input).
    """
    epochs = cfg.epochs if epochs is None else epochs
    lr_schedule = cfg.lr_schedule if lr_schedule is None else lr_schedule
    st = FitState.start(model, cfg) if state is None else state
    opt, sched, rng, rows = st.opt, st.sched, st.rng, st.rows
    params = [p for g in opt.param_groups[:1] for p in g["params"]]
    loss_fn = nn.CrossEntropyLoss()
    device = model.classifier.bias.device
    has_dev = len(dev) > 0
    elapsed_before = st.elapsed
    first_epoch = st.epoch + 1
    if first_epoch > 1 and verbose:
        _log.info(f"{desc}: resumed after epoch {st.epoch}")
    start = time.perf_counter()
    docs = truncate_docs(train.docs, cfg.max_tokens)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    max_norm = cfg.clip if cfg.clip and cfg.clip > 0 else math.inf
    lam_at = reg_strength if callable(reg_strength) else (lambda step: reg_strength)
    penalised = callable(reg_strength) or reg_strength > 0
    proximal = penalised and penalty_update == "proximal"
    if penalty_update not in ("gradient", "proximal"):
        raise ParameterError("penalty_update", f"{penalty_update!r} is not one of gradient, proximal")
    step = sum(1 for _ in bucket_batches(lengths, cfg.batch_size, None, cfg.batch_tokens)) * (first_epoch - 1)
    for epoch in range(first_epoch, epochs + 1):
        if (early_stopping and st.bad >= cfg.patience) or (stop is not None and stop()):
            break
        t0 = time.perf_counter()
        model.train()
        total, total_pen, n_batches = 0.0, 0.0, 0
        batches = bucket_batches(lengths, cfg.batch_size, rng, cfg.batch_tokens)
        bar = tqdm(
            batches, desc=f"{desc} epoch {epoch}", leave=False, disable=progress_disable(verbose), file=sys.stderr
        )
        lam = lam_at(step)
        for idx in bar:
            lam = lam_at(step)
            ids, mask = collate(docs, idx, device)
            logits = model(ids, mask)
            y = train.labels[torch.as_tensor(idx)].to(device)
            if train.soft is not None:  # learning from a teacher
                soft = train.soft[torch.as_tensor(idx)].to(device)
                loss = distillation_loss(logits, y, soft, train.soft_weight, train.temperature)
            else:
                loss = loss_fn(logits, y)
            pen = model.penalty() if penalised else None
            objective = loss + lam * pen if pen is not None and not proximal else loss
            if not torch.isfinite(objective):
                raise _diverged(f"the loss became {objective.item()} at batch {n_batches + 1}", desc, epoch)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            grad_norm = nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
            if rows is not None:  # clipped on their own: the rows do not shrink the WFSAs' steps
                grad_norm = grad_norm + nn.utils.clip_grad_norm_([rows], max_norm)
            if not torch.isfinite(grad_norm):
                raise _diverged(f"the gradient became {grad_norm.item()} at batch {n_batches + 1}", desc, epoch)
            opt.step()
            if rows is not None and cfg.vector_pull > 0:
                cast(StaticRows, model.embeddings).pull_(opt.param_groups[1]["lr"] * cfg.vector_pull)
            if proximal and lam > 0:
                proximal_step_(model, opt, lam)
            step += 1
            total += loss.item()
            total_pen += pen.item() if pen is not None else 0.0
            n_batches += 1
            if after_step is not None:
                after_step(model, step, lam)
            if epsilon is not None and penalised and n_batches % 5 == 0:
                bar.set_postfix_str(f"lambda {lam:.3g}, {sum(surviving_structure(model, epsilon))} transitions")
            if stop is not None and stop():
                break
        if not all(torch.isfinite(p).all() for p in (*params, *([rows] if rows is not None else []))):
            raise _diverged("a weight became NaN or infinite", desc, epoch)
        train_loss = total / max(n_batches, 1)
        dev_acc, dev_loss = evaluate(model, dev) if has_dev else (None, None)
        lr_now = opt.param_groups[0]["lr"]
        structure = list(surviving_structure(model, epsilon)) if epsilon is not None and penalised else None
        log = EpochLog(
            epoch,
            train_loss,
            total_pen / max(n_batches, 1),
            dev_acc,
            lr_now,
            time.perf_counter() - t0,
            train_loss,
            lam if penalised else None,
            sum(structure) if structure is not None else None,
            structure,
            dev_loss,
        )
        st.history.append(log)
        if on_log is not None:
            on_log(log)
        score = _selection_score(st.history, cfg.select_on)  # what early stopping and the schedule follow
        improved = score > st.best_acc
        if improved:
            st.best_acc, st.best_epoch, st.bad = score, epoch, 0
            if keep_best:
                st.best_state = copy.deepcopy(model.state_dict())
        else:
            st.bad += 1
        if verbose and epoch_lines:
            pen_txt = f" penalty {log.penalty:.2f} lambda {lam:.3g}" if penalised else ""
            if structure is not None:
                pen_txt += f" -> {sum(structure)} transitions"
            dev_txt = f"dev acc {dev_acc:.4f}" if dev_acc is not None else f"train loss {train_loss:.4f}"
            _log.info(
                f"{desc} epoch {epoch:3d} of at most {epochs}  loss {log.loss:.4f}{pen_txt}  {dev_txt}"
                f"{' *' if improved else '  '}  lr {lr_now:.2g}  {log.seconds:.1f}s",
            )
        if lr_schedule:
            sched.step(score)
        st.elapsed = elapsed_before + time.perf_counter() - start
        if on_epoch is not None:
            on_epoch(st)
    if keep_best and st.best_state is not None:
        model.load_state_dict(st.best_state)
    return FitResult(st.best_acc, st.best_epoch, st.epoch, elapsed_before + time.perf_counter() - start, st.history)

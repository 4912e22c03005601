"""The training loop: Adam, length-bucketed mini-batches, clipping, early stopping, LR schedule.

``fit`` trains one model on encoded documents; the loss is mean cross-entropy plus
``reg_strength * sum_s ||g_s||_2`` (group lasso, SPEC section 2) when ``reg_strength > 0``.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .model import RationalClassifier


@dataclass
class EncodedData:
    """Documents as token-id tensors (``<s>`` and ``</s>`` included) and class indices."""

    docs: list[Tensor]
    labels: Tensor  # [n] long

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(d) for d in self.docs), dtype=np.int64, count=len(self.docs))


@dataclass
class TrainConfig:
    epochs: int = 100
    patience: int = 10  # early stopping on dev accuracy
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    clip: float = 2.0  # gradient-norm clipping
    seed: int = 0
    lr_schedule: bool = True  # ReduceLROnPlateau(factor 0.5, patience 10) on dev accuracy
    lr_patience: int = 10


@dataclass
class EpochLog:
    epoch: int
    loss: float
    penalty: float
    dev_accuracy: float
    lr: float
    seconds: float


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


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Mini-batches of documents of similar length (little padding), in random order.

    With ``rng`` the documents are sorted by length plus a little noise and the batches
    shuffled; without it, batches are in sorted order (deterministic, for evaluation).
    """
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.argsort(lengths + rng.uniform(0, 0.25 * max(lengths.std(), 1.0), len(lengths)), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
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
def predict_proba(model: RationalClassifier, data: EncodedData, batch_size: int = 128) -> Tensor:
    """Class probabilities ``[n, C]`` in the order of ``data.docs``."""
    was_training = model.training
    model.eval()
    device = model.classifier.bias.device
    out = torch.empty(len(data), model.config.num_classes)
    for idx in bucket_batches(data.lengths, batch_size, None):
        ids, mask = collate(data.docs, idx, device)
        out[torch.as_tensor(idx)] = torch.softmax(model(ids, mask).float(), -1).cpu()
    model.train(was_training)
    return out


def accuracy(model: RationalClassifier, data: EncodedData) -> float:
    if len(data) == 0:
        return float("nan")
    pred = predict_proba(model, data).argmax(-1)
    return float((pred == data.labels).float().mean())


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
) -> FitResult:
    """Train ``model`` in place.

    ``early_stopping``: stop after ``cfg.patience`` epochs without a better dev accuracy.
    ``keep_best``: end with the weights of the best dev epoch (else: the last epoch, as
    the penalised phase of structure learning wants). ``lr_schedule`` defaults to
    ``cfg.lr_schedule`` and is meant to be off while learning structure.
    """
    epochs = cfg.epochs if epochs is None else epochs
    lr_schedule = cfg.lr_schedule if lr_schedule is None else lr_schedule
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=cfg.lr_patience)
    loss_fn = nn.CrossEntropyLoss()
    device = model.classifier.bias.device
    has_dev = len(dev) > 0
    best_acc, best_epoch, best_state, bad = -math.inf, 0, None, 0
    history: list[EpochLog] = []
    start = time.perf_counter()
    lengths = train.lengths
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, total_pen, n_batches = 0.0, 0.0, 0
        batches = bucket_batches(lengths, cfg.batch_size, rng)
        bar = tqdm(batches, desc=f"{desc} epoch {epoch}", leave=False, disable=not verbose or None, file=sys.stderr)
        for idx in bar:
            ids, mask = collate(train.docs, idx, device)
            logits = model(ids, mask)
            loss = loss_fn(logits, train.labels[torch.as_tensor(idx)].to(device))
            pen = model.penalty() if reg_strength > 0 else None
            objective = loss + reg_strength * pen if pen is not None else loss
            opt.zero_grad(set_to_none=True)
            objective.backward()
            if cfg.clip and cfg.clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            total += loss.item()
            total_pen += pen.item() if pen is not None else 0.0
            n_batches += 1
        dev_acc = accuracy(model, dev) if has_dev else float(-total / max(n_batches, 1))
        lr_now = opt.param_groups[0]["lr"]
        log = EpochLog(epoch, total / max(n_batches, 1), total_pen / max(n_batches, 1), dev_acc, lr_now,
                       time.perf_counter() - t0)
        history.append(log)
        improved = dev_acc > best_acc
        if improved:
            best_acc, best_epoch, bad = dev_acc, epoch, 0
            if keep_best:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        if verbose:
            pen_txt = f" penalty {log.penalty:.2f}" if reg_strength > 0 else ""
            dev_txt = f"dev acc {dev_acc:.4f}" if has_dev else f"train loss {-dev_acc:.4f}"
            tqdm.write(
                f"{desc} epoch {epoch:3d}  loss {log.loss:.4f}{pen_txt}  {dev_txt}"
                f"{' *' if improved else '  '}  lr {lr_now:.2g}  {log.seconds:.1f}s",
                file=sys.stderr,
            )
        if lr_schedule:
            sched.step(dev_acc)
        if early_stopping and bad >= cfg.patience:
            break
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(best_acc, best_epoch, len(history), time.perf_counter() - start, history)

"""Training callbacks: ``callbacks=[...]`` in :func:`~sparse_rational.train_text_classifier`
(and the estimator) are told of every epoch of every phase, then of the final metrics.

A callback is an object with any of these methods (the :class:`Callback` base class has
them all, doing nothing), or a plain function, which is called as ``on_epoch_end``::

    on_epoch_end(phase: str, log: EpochLog)   # after each epoch; phase: "train", "path",
                                              # "penalised", "finetune", "finetune:t20", ...
    on_train_end(metrics: Metrics)            # once, with what metrics.json will hold

:class:`TensorBoardCallback` writes the per-epoch numbers as TensorBoard scalars (the
``tensorboard`` extra). An exception in a callback stops training: it is the user's code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .metrics import Metrics
    from .train import EpochLog

__all__ = ["Callback", "TensorBoardCallback", "notify"]


class Callback:
    """Base class of training callbacks; override the methods you need."""

    def on_epoch_end(self, phase: str, log: EpochLog) -> None:
        """After every epoch of every phase."""

    def on_train_end(self, metrics: Metrics) -> None:
        """Once, when the model is finished (its metrics as metrics.json holds them)."""


def notify(callbacks: Sequence[Any], event: str, *args: Any) -> None:
    """Call ``event`` on each callback that has it; a plain function is an ``on_epoch_end``."""
    for cb in callbacks:
        method = getattr(cb, event, None)
        if method is not None:
            method(*args)
        elif callable(cb) and event == "on_epoch_end" and not isinstance(cb, Callback):
            cb(*args)


SCALARS = ("loss", "penalty", "dev_accuracy", "dev_loss", "lr", "seconds", "reg_strength", "transitions")


class TensorBoardCallback(Callback):
    """Per-epoch scalars ``<phase>/<name>`` (loss, penalty, dev accuracy and loss, lr,
    seconds, lambda, surviving transitions) in a TensorBoard log folder, with the final
    metrics as a text entry. Needs the ``tensorboard`` package (``pip install
    'sparse-rational[tensorboard]'``)."""

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional (tensorboard)
        except ImportError:
            raise UserError(
                "TensorBoardCallback needs the tensorboard package: pip install 'sparse-rational[tensorboard]'"
            ) from None
        self.log_dir = os.fspath(log_dir)
        self.writer = SummaryWriter(self.log_dir)
        self._steps: dict[str, int] = {}

    def on_epoch_end(self, phase: str, log: EpochLog) -> None:
        for name in SCALARS:
            value = getattr(log, name, None)
            if value is not None:
                self.writer.add_scalar(f"{phase}/{name}", value, log.epoch)
        self.writer.flush()

    def on_train_end(self, metrics: Metrics) -> None:
        summary = {k: metrics.get(k) for k in ("dev_accuracy", "test_accuracy", "transitions", "structure_summary")}
        self.writer.add_text("metrics", "```\n" + json.dumps(summary, indent=2) + "\n```")
        self.writer.close()

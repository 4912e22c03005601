"""The phase runner: runs the training phases of one run in order and owns checkpoints and resume.

Structure learning is a short program of phases (``penalised`` -> prune -> ``finetune``;
or ``search:1``, ``search:2``, ... -> prune -> ``finetune``). Each phase is one call of
:func:`~sparse_rational.train.fit` under a unique name, made through :meth:`Phases.fit`.
The runner saves the whole state at the end of every epoch, with the results of the
phases already finished; the weights of the most recently finished phase (and of any
phase run with ``keep=True``) travel with it.

Resume is replay: a resumed run executes the same program from the start. A phase that
had finished returns its stored result at once (restoring its weights when they were
kept), the phase that was running continues from its last epoch, and every step between
phases (pruning, the next lambda of the search) is recomputed from the same numbers, so
it comes out the same. The code of an algorithm therefore contains no resume logic at
all; :meth:`Phases.record` stores small values a later phase needs from a finished one
whose weights were not kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .callbacks import notify
from .checkpoint import Checkpoint, Checkpointer, model_tensors, restore_module_state, to_jsonable
from .errors import TrainingDiverged
from .model import RationalClassifier
from .train import EncodedData, EpochLog, FitResult, FitState, TrainConfig, fit

HISTORY_KEYS = ("epoch", "loss", "penalty", "dev_accuracy", "dev_loss", "lr", "seconds", "reg_strength", "transitions")

_NAME = re.compile(r"^[a-z]+(:[a-z0-9.]+)?$")


class Phases:
    """Runs named phases, checkpointing each epoch to ``checkpointer`` (None: no checkpoints)."""

    def __init__(self, checkpointer: Checkpointer | None = None, verbose: bool = True, callbacks: Sequence[Any] = ()):
        self.checkpointer = checkpointer
        self.verbose = verbose
        self.callbacks = list(callbacks)  # see sparse_rational.callbacks: told of every epoch
        self.finished: dict[str, dict] = {}  # name -> {"fit": FitResult as JSON, "records": {...}}
        self.kept: dict[str, dict[str, torch.Tensor]] = {}  # name -> weights that later phases need
        self.last_finished: str | None = None
        self.stashed: dict[str, tuple[dict[str, torch.Tensor], dict]] = {}  # key -> (weights, info)
        self.pending: Checkpoint | None = None
        if checkpointer is not None and checkpointer.pending is not None:
            self._load(checkpointer.pending)

    # -- resume ------------------------------------------------------------------------------
    def _load(self, ck: Checkpoint) -> None:
        try:
            finished = ck.state.get("finished", {})
            if not isinstance(finished, dict) or not all(
                isinstance(v, dict) and _NAME.match(k) for k, v in finished.items()
            ):
                raise ValueError("bad list of finished phases")
            kept: dict[str, dict[str, torch.Tensor]] = {}
            for key, t in ck.prefixed("kept.").items():
                name, _, tensor = key.partition("/")
                kept.setdefault(name, {})[tensor] = t
            if not set(kept) <= set(finished):
                raise ValueError("weights of a phase that did not finish")
            last = ck.state.get("last_finished")
            if last is not None and last not in finished:
                raise ValueError(f"last finished phase {str(last)[:40]!r} is unknown")
            info = ck.state.get("stashed", {})
            if not isinstance(info, dict):
                raise ValueError("bad stash")
            stashed: dict[str, tuple[dict[str, torch.Tensor], dict]] = {k: ({}, dict(v)) for k, v in info.items()}
            for key, t in ck.prefixed("stash.").items():
                name, _, tensor = key.partition("|")
                if name not in stashed:
                    raise ValueError(f"stashed weights {name[:40]!r} without their record")
                stashed[name][0][tensor] = t
        except (TypeError, ValueError, AttributeError) as exc:
            raise ck.bad(f"bad phase state ({exc})") from None
        self.finished, self.kept, self.last_finished = dict(finished), kept, last
        self.stashed = stashed
        self.pending = ck

    # -- running -----------------------------------------------------------------------------
    def fit(
        self,
        name: str,
        model: RationalClassifier,
        train: EncodedData,
        dev: EncodedData,
        cfg: TrainConfig,
        *,
        keep: bool = False,
        **kwargs: Any,
    ) -> FitResult:
        """``fit(model, ...)`` as phase ``name``; a finished phase returns its stored result
        (and restores the weights it kept), a pending one continues where it stopped."""
        assert _NAME.match(name), name
        if name in self.finished:
            if name in self.kept:
                model.load_state_dict(self._state_dict(model, name))
            return FitResult.from_dict(self.finished[name]["fit"])
        state = FitState.start(model, cfg)
        if self.pending is not None:  # the phase that was running: its state at its last epoch
            if self.pending.phase != name:
                raise self.pending.bad(f"holds phase {self.pending.phase!r} but the run is at phase {name!r}")
            state.load_state_dict(self.pending)
            self.pending = None
        on_epoch = None
        if self.checkpointer is not None:

            def on_epoch(st: FitState) -> None:
                self._save(name, st.epoch, *st.state_dict())

        desc = kwargs.pop("desc", name)
        verbose = kwargs.pop("verbose", True) and self.verbose
        on_log = None
        if self.callbacks:

            def on_log(log: EpochLog) -> None:
                notify(self.callbacks, "on_epoch_end", name, log)

        try:
            result = fit(
                model,
                train,
                dev,
                cfg,
                desc=desc,
                verbose=verbose,
                state=state,
                on_epoch=on_epoch,
                on_log=on_log,
                **kwargs,
            )
        except TrainingDiverged as exc:
            where = self.checkpointer.describe_last() if self.checkpointer is not None else "nothing was saved"
            raise TrainingDiverged(f"{exc} ({where})") from None
        self.finished[name] = {"fit": to_jsonable(result.to_dict()), "records": {}}
        # the weights of the latest phase always travel: the next phase starts from them
        self.kept = {k: v for k, v in self.kept.items() if self.finished[k].get("keep")}
        self.kept[name] = {k: v.detach().clone() for k, v in model_tensors(model).items()}
        self.finished[name]["keep"] = keep
        self.last_finished = name
        return result

    def history(self, names: Callable[[str], bool] | None = None) -> list[dict]:
        """Every epoch of the finished phases (those ``names`` accepts), in the order they
        ran: ``{"phase", "epoch", "loss", "penalty", "dev_accuracy", "dev_loss", "lr",
        "seconds"}`` and, in penalised phases, ``reg_strength`` and ``transitions``."""
        rows = []
        for name, done in self.finished.items():
            if names is not None and not names(name):
                continue
            for log in done["fit"].get("history", []):
                row: dict[str, Any] = {"phase": name}
                for key in HISTORY_KEYS:
                    value = log.get(key)
                    if value is not None or key in ("dev_accuracy",):
                        row[key] = round(value, 6) if isinstance(value, float) else value
                rows.append(row)
        return rows

    def record(self, name: str, key: str, compute: Callable[[], Any]) -> Any:
        """A JSON value derived from finished phase ``name`` (computed once, then stored)."""
        records = self.finished[name].setdefault("records", {})
        if key not in records:
            records[key] = to_jsonable(compute())
        return records[key]

    def stash(self, key: str, model: RationalClassifier, info: dict) -> None:
        """Keep a copy of ``model``'s weights under ``key`` (with a JSON ``info``), saved with
        every later checkpoint: a snapshot taken inside a phase (the regularisation path)."""
        weights = {k: v.detach().clone() for k, v in model_tensors(model).items()}
        self.stashed[key] = (weights, to_jsonable(info))

    def rename_stash(self, key: str, new: str) -> None:
        """Keep the weights and info stashed under ``key`` under ``new`` instead."""
        self.stashed[new] = self.stashed.pop(key)

    def load_stashed(self, model: RationalClassifier, key: str) -> dict:
        """Load the weights stashed under ``key`` into ``model``; returns their info."""
        weights, info = self.stashed[key]
        model.load_state_dict(self._fit_weights(model, weights, key))
        return info

    def _state_dict(self, model: RationalClassifier, name: str) -> dict:
        return self._fit_weights(model, self.kept[name], name)

    @staticmethod
    def _fit_weights(model: RationalClassifier, weights: dict, name: str) -> dict:
        out = dict(model.state_dict())
        for k, t in weights.items():
            if k not in out or tuple(out[k].shape) != tuple(t.shape):
                raise ValueError(f"kept weights of phase {name} do not fit the model ({k})")
            out[k] = t.to(out[k].dtype)
        return out

    def _save(self, phase: str, epoch: int, tensors: dict, state: dict) -> None:
        assert self.checkpointer is not None
        extra = {f"kept.{name}/{k}": v for name, group in self.kept.items() for k, v in group.items()}
        extra.update({f"stash.{key}|{k}": v for key, (group, _) in self.stashed.items() for k, v in group.items()})
        self.checkpointer.save(
            phase,
            epoch,
            {**tensors, **extra},
            {
                **state,
                "finished": self.finished,
                "last_finished": self.last_finished,
                "stashed": {key: info for key, (_, info) in self.stashed.items()},
            },
        )


__all__ = ["Phases", "restore_module_state"]

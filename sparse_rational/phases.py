"""The phase runner: runs the training phases of one run in order and owns checkpoints and resume.

Structure learning is a short program of phases (``penalised`` -> prune -> ``finetune``;
or ``search:1``, ``search:2``, ... -> prune -> ``finetune``; or ``path`` -> prune ->
``finetune:t<target>`` per target). Each phase is one call of
:func:`~sparse_rational.train.fit` under a unique name, made through :meth:`Phases.fit`.
The runner saves the whole state at the end of every epoch: the running phase's
:class:`~sparse_rational.train.FitState`, and the results and final weights of every phase
already finished.

Resume is replay: a resumed run executes the same program from the start. A phase that
had finished returns its stored result at once and restores the weights it ended with,
the phase that was running continues from its last epoch, and every step between phases
(pruning, the next lambda of the search) is recomputed from the same numbers, so it comes
out the same. An object whose state belongs to a phase (the path's snapshot tracker, a
:class:`Stateful`) is passed as ``stateful=`` and is saved and restored with the phase.
The code of an algorithm therefore contains no resume logic at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from .callbacks import notify
from .checkpoint import (
    Checkpoint,
    Checkpointer,
    load_weights,
    restore_module_state,
    snapshot_weights,
    to_jsonable,
)
from .errors import TrainingDiverged
from .model import RationalClassifier
from .train import EncodedData, EpochLog, FitResult, FitState, TrainConfig, fit


class Stateful(Protocol):
    """State that belongs to a phase beside its model (the path's snapshots): tensors and a
    JSON value, saved with every checkpoint of the phase and restored on resume or replay."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]: ...

    def load_state_dict(self, tensors: dict[str, torch.Tensor], info: dict) -> None: ...


HISTORY_KEYS = ("epoch", "loss", "penalty", "dev_accuracy", "dev_loss", "lr", "seconds", "reg_strength", "transitions")

_NAME = re.compile(r"^[a-z]+(:[a-z0-9.]+)?$")


class Phases:
    """Runs named phases, checkpointing each epoch to ``checkpointer`` (None: no checkpoints)."""

    def __init__(self, checkpointer: Checkpointer | None = None, verbose: bool = True, callbacks: Sequence[Any] = ()):
        self.checkpointer = checkpointer
        self.verbose = verbose
        self.callbacks = list(callbacks)  # see sparse_rational.callbacks: told of every epoch
        self.finished: dict[str, dict] = {}  # name -> {"fit": FitResult as JSON, "carried": [info, ...]}
        self.kept: dict[str, dict[str, torch.Tensor]] = {}  # name -> the weights the phase ended with
        self.carried: dict[str, list[dict[str, torch.Tensor]]] = {}  # name -> tensors of its Stateful objects
        self.last_finished: str | None = None
        self.pending: Checkpoint | None = None
        if checkpointer is not None and checkpointer.pending is not None:
            self._load(checkpointer.pending)

    # -- resume ------------------------------------------------------------------------------
    def _load(self, ck: Checkpoint) -> None:
        try:
            if ck.state.get("stashed"):  # before the path's snapshots went with their phase
                raise ValueError("it was made by an earlier version; start again without resuming")
            finished = ck.state.get("finished", {})
            if not isinstance(finished, dict) or not all(
                isinstance(v, dict) and _NAME.match(k) for k, v in finished.items()
            ):
                raise ValueError("bad list of finished phases")
            kept: dict[str, dict[str, torch.Tensor]] = {}
            for key, t in ck.prefixed("kept.").items():
                name, _, tensor = key.partition("/")
                kept.setdefault(name, {})[tensor] = t
            carried: dict[str, list[dict[str, torch.Tensor]]] = {}
            for key, t in ck.prefixed("carried.").items():
                name, _, rest = key.partition("/")
                index, _, tensor = rest.partition("|")
                group = carried.setdefault(name, [{} for _ in finished.get(name, {}).get("carried", [])])
                group[int(index)][tensor] = t
            if not set(kept) | set(carried) <= set(finished):
                raise ValueError("weights of a phase that did not finish")
            if set(finished) - set(kept):  # an earlier version kept only the latest phase's weights
                raise ValueError("it was made by an earlier version; start again without resuming")
            last = ck.state.get("last_finished")
            if last is not None and last not in finished:
                raise ValueError(f"last finished phase {str(last)[:40]!r} is unknown")
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ck.bad(f"bad phase state ({exc})") from None
        self.finished, self.kept, self.carried, self.last_finished = dict(finished), kept, carried, last
        self.pending = ck

    def _restore(self, objects: Sequence[Stateful], tensors: Sequence[dict], infos: Any) -> None:
        """Load saved states into ``objects`` (a damaged checkpoint: one line naming it)."""
        try:
            if not isinstance(infos, list) or len(infos) != len(objects):
                raise ValueError(f"{len(objects)} state(s) expected")
            for obj, group, info in zip(objects, tensors or [{}] * len(objects), infos):
                obj.load_state_dict(dict(group), dict(info))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            source = self.checkpointer.pending if self.checkpointer is not None else None
            if source is None:
                raise
            raise source.bad(f"bad phase state ({exc})") from None

    # -- running -----------------------------------------------------------------------------
    def fit(
        self,
        name: str,
        model: RationalClassifier,
        train: EncodedData,
        dev: EncodedData,
        cfg: TrainConfig,
        *,
        stateful: Sequence[Stateful] = (),
        **kwargs: Any,
    ) -> FitResult:
        """``fit(model, ...)`` as phase ``name``; a finished phase returns its stored result
        and restores the weights it ended with (and the state of ``stateful``), a pending one
        continues where it stopped."""
        assert _NAME.match(name), name
        if name in self.finished:
            load_weights(model, self.kept[name], f"phase {name}")
            self._restore(stateful, self.carried.get(name, []), self.finished[name].get("carried", []))
            return FitResult.from_dict(self.finished[name]["fit"])
        state = FitState.start(model, cfg)
        if self.pending is not None:  # the phase that was running: its state at its last epoch
            if self.pending.phase != name:
                raise self.pending.bad(f"holds phase {self.pending.phase!r} but the run is at phase {name!r}")
            state.load_state_dict(self.pending)
            running = [self.pending.prefixed(f"running.{i}|") for i in range(len(stateful))]
            self._restore(stateful, running, self.pending.state.get("running", []))
            self.pending = None
        on_epoch = None
        if self.checkpointer is not None:

            def on_epoch(st: FitState) -> None:
                self._save(name, st.epoch, *st.state_dict(), stateful)

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
        carried = [obj.state_dict() for obj in stateful]
        self.finished[name] = {"fit": to_jsonable(result.to_dict()), "carried": [to_jsonable(i) for _, i in carried]}
        self.kept[name] = snapshot_weights(model)  # a later step (pruning, replay) reads them
        self.carried[name] = [{k: v.detach().clone() for k, v in t.items()} for t, _ in carried]
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

    def _save(self, phase: str, epoch: int, tensors: dict, state: dict, stateful: Sequence[Stateful]) -> None:
        assert self.checkpointer is not None
        extra = {f"kept.{name}/{k}": v for name, group in self.kept.items() for k, v in group.items()}
        extra.update(
            {
                f"carried.{name}/{i}|{k}": v
                for name, groups in self.carried.items()
                for i, group in enumerate(groups)
                for k, v in group.items()
            }
        )
        running = [obj.state_dict() for obj in stateful]
        extra.update({f"running.{i}|{k}": v for i, (group, _) in enumerate(running) for k, v in group.items()})
        self.checkpointer.save(
            phase,
            epoch,
            {**tensors, **extra},
            {
                **state,
                "finished": self.finished,
                "last_finished": self.last_finished,
                "running": [to_jsonable(info) for _, info in running],
            },
        )


__all__ = ["Phases", "Stateful", "restore_module_state"]

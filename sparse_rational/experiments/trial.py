"""One trial: train one model as a :class:`~.protocol.TrialSpec` says, return a JSON record.

:func:`run_trial` is the function every executor runs (in a pool worker or a Ray task). It
never raises: any exception becomes a record with ``status: "failed"``, the error line and
the traceback, so one bad trial does not stop a sweep. A path trial (several targets) keeps
one set of metrics per target reached under ``metrics["targets"]`` and lists the targets the
path missed under ``metrics["missed"]``. Every model's metrics hold ``test_correct``, one
character per test document in the split's order (``1`` right, ``0`` wrong), for the
summary's paired intervals over test documents. Datasets and word vectors are cached
per worker process (a worker runs many trials on the same data).
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
import traceback
from typing import Any, cast

from ..config import ModelOptions, RunOptions, StructureOptions, TrainConfig
from ..data import Splits, load_dataset, load_files
from .protocol import DatasetRef, TrialSpec

RECORD_FORMAT = "sparse-rational-trial/1"
#: Metrics kept in a trial record (the rest of ``TextClassifier.metrics`` is bulky).
KEEP = (
    "dev_accuracy",
    "test_accuracy",
    "transitions",
    "structure",
    "structure_summary",
    "wfsas",
    "parameters",
    "reg_strength",
    "train_seconds",
    "epochs",
    "best_epoch",
    "seconds_per_epoch",
    "penalised_epochs",
    "finetune_epochs",
    "transitions_before_pruning",
    "structure_before_finetune",
    "search",
    "train_size",
    "dev_size",
    "test_size",
    "target_transitions",
    "hyperparameters",
)


def limit_threads(threads: int = 1) -> None:
    """Before torch is imported: one OpenMP/MKL thread per worker unless told otherwise."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


@functools.lru_cache(maxsize=4)
def _load_splits(dataset: DatasetRef):
    if dataset.paths:
        splits = load_files(*dataset.paths)
    else:
        splits = load_dataset(cast(str, dataset.spec), dataset.data_dir, dataset.split_seed)
    if dataset.max_train:
        splits = Splits(stratified_head(splits.train, dataset.max_train), splits.dev, splits.test)
    return splits


def stratified_head(examples, n: int):
    """The first ``n`` examples taking the labels in turn (keeps the classes balanced)."""
    by_label: dict[str, list] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    out: list = []
    queues = [list(v) for _, v in sorted(by_label.items())]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def _keep(metrics, clf=None, splits=None) -> dict:
    kept = {k: metrics[k] for k in KEEP if k in metrics}
    if clf is not None and splits is not None and splits.test:
        kept["test_correct"] = correct_flags(clf, splits.test)
    return kept


def correct_flags(clf, test) -> str:
    """``"1"``/``"0"`` per test example: whether ``clf`` labels it right (texts read whole,
    as :meth:`TextClassifier.evaluate` reads them)."""
    predicted = clf.predict([e.text for e in test], max_tokens=0)
    return "".join("1" if p == e.label else "0" for p, e in zip(predicted, test))


def _train(spec: TrialSpec) -> dict:
    import torch  # lazy: start-up (torch)

    from ..pipeline import train_structure_path, train_text_classifier  # lazy: start-up (torch)

    torch.set_num_threads(max(1, spec.threads))
    splits = _load_splits(spec.dataset)
    hp = spec.hyperparameters
    # the protocol's settings are spelled out, so that the library's defaults (chosen for
    # users, not for fidelity to the paper) never change what a sweep computes
    cfg = TrainConfig(
        epochs=spec.epochs,
        patience=spec.patience,
        batch_size=spec.batch_size,
        lr=hp["lr"],
        weight_decay=hp["weight_decay"],
        clip=hp["clip"],
        seed=spec.seed,
        lr_schedule=True,
        lr_patience=10,
        select_on="accuracy",
        contrast_pairs=0.0,  # the paper's training texts only, whatever the library's default
        negation_pairs=0.0,
    )
    opts = StructureOptions(
        reg_epochs=spec.reg_epochs,
        epsilon=spec.epsilon,
        search_tolerance=spec.tolerance,
        penalty_update=spec.penalty_update,
        depth_discount=0.0,  # the paper's penalty: every state alike, whatever the library's default
        **cast(
            "dict[str, Any]",
            {"structure_search": "path", **(spec.path or {})} if spec.uses_path else {"structure_search": "lambda"},
        ),
    )
    model = ModelOptions(  # the paper's frozen word vectors, whatever the library's default
        spec.config.patterns, hp["dropout"], hp["input_dropout"], spec.readout, self_loop_bias=0.0, vectors="frozen"
    )
    if spec.config.targets:  # a path trial: one run, one result per target of the sweep
        run = train_structure_path(
            splits,
            spec.targets,
            options=RunOptions(spec.embeddings, model, cfg, opts, device=spec.device),
            verbose=False,
        )
        return {
            "targets": {str(t): _keep(clf.metrics, clf, splits) for t, clf in run.models.items()},
            "missed": run.missed,
            "path": run.path,
            "snapshots": {str(t): s for t, s in run.snapshots.items()},
            "penalised_seconds": round(run.penalised_seconds, 2),
        }
    clf = train_text_classifier(
        splits,
        reg_strength=spec.reg_strength if spec.config.method == "sparse" else 0.0,
        target_transitions=spec.target if spec.config.method == "sparse" else None,
        options=RunOptions(spec.embeddings, model, cfg, opts, device=spec.device),
        verbose=False,
    )
    return _keep(clf.metrics, clf, splits)


def run_trial(spec: TrialSpec | dict) -> dict:
    """Run one trial; return its record (``status`` ``ok`` or ``failed``). Never raises."""
    if isinstance(spec, dict):
        spec = TrialSpec.from_dict(spec)
    start = time.perf_counter()
    record = {
        "format": RECORD_FORMAT,
        "key": spec.key,
        "config": spec.identity(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
    }
    try:
        record["metrics"] = _train(spec)
        record["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - a trial must not take the sweep down
        if isinstance(exc, KeyboardInterrupt):
            raise
        lines = str(exc).strip().splitlines()
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        record["traceback"] = traceback.format_exc(limit=20)
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record

"""The Python API's training: ``train_text_classifier`` (options -> checks -> data ->
phases -> structure learning or one fit -> a :class:`~.classifier.TextClassifier`) and the
regularisation path (``train_structure_path``); the random search is :mod:`.tuning`. The
classifier, its folder and prediction live in :mod:`.classifier` (its names are
re-exported here, where they always were)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .callbacks import notify
from .classifier import (  # the classifier and its folder (re-exported: the API has always offered them here)
    CARD,
    DEFAULT_MAX_TOKENS,
    FORMAT,
    MODEL_FILES,
    PATH_JSON,
    TextClassifier,
    check_out_folder,
    is_model_folder,
)
from .config import RunOptions, StructureOptions, TrainConfig
from .data import Splits, splits_from
from .device import check_precision, resolve_device
from .embeddings.featurizer import CHARS_PER_TOKEN  # noqa: F401  (re-exported: where texts are cut)
from .embeddings.rows import StaticRows
from .embeddings.transformer import TransformerOptions
from .errors import ParameterError
from .fileio import atomic_directory, atomic_write_json
from .learn import learn_structure, regularisation_path
from .log import get_logger
from .metrics import Metrics
from .model import RationalClassifier
from .phases import Phases
from .plots import plot_path
from .prepare import Prepared, prepare
from .provenance import provenance
from .train import accuracy
from .validate import check_run, check_training_data, resolve_negation_pairs

_log = get_logger(__name__)

__all__ = [
    "CARD",
    "DEFAULT_MAX_TOKENS",
    "FORMAT",
    "MODEL_FILES",
    "PathRun",
    "TextClassifier",
    "check_out_folder",
    "is_model_folder",
    "prepare_run",
    "train_structure_path",
    "train_text_classifier",
]


def _finish(
    data: Prepared,
    splits: Splits,
    options: RunOptions,
    model: RationalClassifier,
    last,
    learned=None,
    history: list[dict] | None = None,
    call: str = "sparse_rational.train_text_classifier",
    start: float = 0.0,
) -> TextClassifier:
    """The classifier of ``model`` with its metrics (``learned``: a structure-learning result;
    ``history``: the epochs of the phases that made it)."""
    model.eval()
    metrics = Metrics.of_run(model, options, data, last, learned, history, (len(splits.train), len(splits.dev)))
    metrics.dev_accuracy = accuracy(model, data.dev) if len(data.dev) else None
    if isinstance(model.embeddings, StaticRows):
        metrics.vectors = "tuned" if model.embeddings.tuned else "frozen"
        if model.embeddings.tuned:
            metrics.tuned_vector_parameters = int(model.embeddings.weight.numel())
        model.embeddings.freeze_()  # trained: the tuned rows are the model's rows, as a loaded model holds them
    clf = data.classifier(model)
    clf.metrics = metrics
    if splits.test:
        metrics.test_accuracy, metrics.test_size = clf.evaluate(splits.test), len(splits.test)
    metrics.provenance = provenance(
        call, model.config.embedding_dim, model.classifier.bias.device, getattr(model, "precision", "fp32")
    )
    metrics.train_seconds = round(time.perf_counter() - start, 2)
    return clf


def prepare_run(
    splits, options: RunOptions, verbose: bool = True, hf_options: TransformerOptions | None = None
) -> tuple[Splits, RunOptions, Prepared]:
    """check -> prepare: the splits (data in memory made into splits), the options as the run
    uses them (:func:`~sparse_rational.validate.check_run`) and the prepared data
    (:func:`~sparse_rational.prepare.prepare`: encoded documents and a model factory)."""
    options, stack = check_run(options)
    if not isinstance(splits, Splits):  # data in memory: a list of pairs, a DataFrame, a Dataset
        splits = splits_from(splits)
    classes = check_training_data(splits)
    options = resolve_negation_pairs(options, classes, len(splits.train))
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    return splits, options, prepare(splits, options, stack, classes, device, verbose, hf_options)


def train_text_classifier(
    splits: Splits,
    embeddings: str | None = None,
    patterns: str | Sequence[int] | None = None,
    reg_strength: float | None = None,
    target_transitions: int | None = None,
    train_config: TrainConfig | None = None,
    structure_options: StructureOptions | None = None,
    dropout: float | None = None,
    input_dropout: float | None = None,
    verbose: bool = True,
    checkpoint=None,
    hf_options: TransformerOptions | None = None,
    options: RunOptions | None = None,
    readout: str | None = None,
    callbacks: Sequence[Any] = (),
) -> TextClassifier:
    """Train a rational RNN on ``splits`` (:class:`~sparse_rational.data.Splits`, or training
    data in memory: ``(text, label)`` pairs, a DataFrame or a Dataset with ``text`` and
    ``label`` columns, 10 % carved off as the dev set; other columns and explicit dev/test
    data: :func:`~sparse_rational.data.splits_from`). With ``reg_strength > 0`` or a target number of
    transitions, learn its structure (penalise, prune, finetune). ``metrics`` of the result
    (a :class:`~sparse_rational.metrics.Metrics`) hold accuracies, structure, transitions
    and timings. Several targets at once: :func:`train_structure_path`.

    Every argument left as None takes its value from ``options`` (a
    :class:`~sparse_rational.config.RunOptions`), whose defaults are the library's; the
    explicit arguments override it. Nothing passed in is modified.

    ``checkpoint``: a :class:`~sparse_rational.checkpoint.Checkpointer`; every epoch is
    checkpointed, and a pending (resumed) checkpoint is continued exactly.

    ``embeddings``: ``glove-6b-50d``, a GloVe/word2vec text file, or ``hf:minilm`` /
    ``hf:FOLDER`` / ``hf:ID`` (a frozen transformer; ``hf_options`` says how its vectors are
    made, and ``metrics["encoding"]`` records the encoding time and the cache).

    ``callbacks``: told of every epoch and of the final metrics (see
    :mod:`~sparse_rational.callbacks`; e.g. a ``TensorBoardCallback``). Every epoch is also
    in ``metrics["history"]``."""
    start = time.perf_counter()
    options = (options or RunOptions()).override(
        embeddings=embeddings,
        train=train_config,
        structure=structure_options,
        patterns=patterns,
        dropout=dropout,
        input_dropout=input_dropout,
        readout=readout,
        reg_strength=reg_strength,
        target_transitions=target_transitions,
    )
    if len(options.structure.targets) > 1:
        raise ParameterError("target_transitions", "several targets give several models: use train_structure_path")
    splits, options, data = prepare_run(splits, options, verbose, hf_options)
    phases = Phases(checkpoint, verbose=verbose, callbacks=callbacks)
    learned = None
    if options.structure.learns_structure:
        learned = learn_structure(data.make, data.train, data.dev, options.train, options.structure, verbose, phases)
        model, last = learned.model, learned.finetune
    else:
        model = data.make()
        last = phases.fit("train", model, data.train, data.dev, options.train)
    clf = _finish(data, splits, options, model, last, learned, phases.history(), start=start)
    notify(callbacks, "on_train_end", clf.metrics)
    return clf


@dataclass
class PathRun:
    """The models of one regularisation path (one per target reached) and the path itself."""

    models: dict[int, TextClassifier]
    path: list[dict]
    snapshots: dict[int, dict]
    missed: list[int]
    penalised_seconds: float
    options: dict

    def path_dict(self) -> dict:
        return {
            "format": "sparse-rational-path/1",
            "options": self.options,
            "epochs": self.path,
            "snapshots": {str(t): s for t, s in self.snapshots.items()},
            "missed": self.missed,
            "penalised_seconds": round(self.penalised_seconds, 2),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """``path/t<target>/`` (a model folder each), ``path.json`` and ``path.png``, written
        atomically as one folder (an earlier path folder of ours is replaced at the end)."""
        check_out_folder(path, "save")
        with atomic_directory(path) as tmp:
            for target, clf in self.models.items():
                clf.save(tmp / f"t{target}")
            atomic_write_json(tmp / PATH_JSON, self.path_dict())
            plot_path(self.path, self.snapshots, tmp / "path.png")
        return Path(path)


def train_structure_path(
    splits: Splits,
    target_transitions: Sequence[int],
    embeddings: str | None = None,
    patterns: str | Sequence[int] | None = None,
    train_config: TrainConfig | None = None,
    structure_options: StructureOptions | None = None,
    verbose: bool = True,
    checkpoint=None,
    hf_options: TransformerOptions | None = None,
    options: RunOptions | None = None,
    callbacks: Sequence[Any] = (),
) -> PathRun:
    """All ``target_transitions`` from one penalised run whose lambda grows along a path:
    a model per target reached (pruned from the path's snapshot, then finetuned), and the
    path (lambda, transitions, structure and dev accuracy per epoch). Targets the path
    jumped over or never reached are listed in ``missed`` (no exception: the others are
    kept)."""
    start = time.perf_counter()
    options = (options or RunOptions()).override(  # the groups first, then the path's fields over them
        embeddings=embeddings,
        train=train_config,
        structure=structure_options,
        patterns=patterns,
        target_transitions=tuple(sorted(set(target_transitions), reverse=True)),
        structure_search="path",
    )
    splits, options, data = prepare_run(splits, options, verbose, hf_options)
    opts = options.structure
    phases = Phases(checkpoint, verbose=verbose, callbacks=callbacks)
    result = regularisation_path(phases, data.make, data.train, data.dev, options.train, opts, verbose)
    models = {}
    for target, learned in result.models.items():
        learned.search = []
        history = phases.history(lambda name, t=target: name in ("path", f"finetune:t{t}"))  # type: ignore[misc]
        models[target] = _finish(
            data,
            splits,
            options,
            learned.model,
            learned.finetune,
            learned,
            history,
            "sparse_rational.train_structure_path",
            start,
        )
        models[target].metrics.target_transitions = target
        notify(callbacks, "on_train_end", models[target].metrics)
    options_json = {
        "targets": list(opts.targets),
        "path_start": opts.path_start,
        "path_growth": opts.path_growth,
        "path_warmup": opts.path_warmup,
        "penalty_update": opts.penalty_update,
        "epsilon": opts.epsilon,
        "reg_epochs": opts.reg_epochs,
        "patterns": data.initial,
        "lr": options.train.lr,
        "seed": options.train.seed,
    }
    return PathRun(models, result.path, result.snapshots, result.missed, result.penalised.seconds, options_json)

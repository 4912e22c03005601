"""The Python API's training: ``train_text_classifier`` (options -> checks -> data ->
phases -> structure learning or one fit -> a :class:`~.classifier.TextClassifier`) and the
regularisation path (``train_structure_path``); the random search is :mod:`.tuning`. The
classifier, its folder and prediction live in :mod:`.classifier` (its names are
re-exported here, where they always were)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch

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
from .config import check as check_options
from .data import Splits, splits_from
from .device import check_precision, resolve_device
from .embeddings.featurizer import (
    CHARS_PER_TOKEN,  # noqa: F401  (re-exported: where texts are cut)
    build_featurizer,
)
from .embeddings.hf_options import is_contextual
from .embeddings.rows import StaticRows
from .embeddings.transformer import TransformerOptions
from .errors import ParameterError, UserError
from .fileio import atomic_directory, atomic_write_json
from .learn import learn_structure, regularisation_path
from .log import get_logger
from .metrics import Metrics
from .model import ModelConfig, RationalClassifier
from .phases import Phases
from .provenance import provenance
from .structure import check_size, format_structure, parse_stack, repeat_layers
from .teach import teach
from .train import EncodedData, accuracy, soften

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
    "train_structure_path",
    "train_text_classifier",
]


def _seeded_model(
    config: ModelConfig,
    rows,
    seed: int,
    self_loop_bias: float,
    device: torch.device,
    precision: str = "fp32",
    tuned: bool = False,
):
    def make() -> RationalClassifier:
        torch.manual_seed(seed)  # the weights are drawn on the CPU: the same model on every device
        # rows of its own (a copy of the featurizer's static rows; a table is shared, read-only)
        model = RationalClassifier(config, rows.copy() if rows is not None else None, self_loop_bias=self_loop_bias)
        if tuned:  # the static rows become parameters (--vectors tuned)
            cast(StaticRows, model.embeddings).tune_()
        model = model.to(device)
        model.precision = precision
        return model

    return make


def _prepare_data(
    splits, embeddings, stack, classes, mopts, seed, verbose, hf_options, device, precision, teach_opts=None
):
    """The featurizer of ``embeddings`` (a vocabulary and its frozen static vectors, or the
    transformer vectors of every text, encoded once into the disk cache or read from it),
    the documents as row ids, and a factory of models built over the featurizer's rows.
    With a teacher (``teach_opts.teacher``), the training data also holds the transfer texts
    and every text the teacher's probabilities (:mod:`~sparse_rational.teach`)."""
    taught = None
    if teach_opts is not None and teach_opts.teacher:
        taught = teach(splits, teach_opts, classes, TextClassifier.load, seed, str(device), verbose)
    extra = taught.texts[len(splits.train) :] if taught is not None else []
    featurizer, prep = build_featurizer(
        splits,
        embeddings,
        seed,
        verbose=verbose,
        hf_options=hf_options,
        num_classes=len(classes),
        device=str(device),
        extra_texts=extra,
    )
    ndir = 2 if mopts.bidirectional else 1
    check_size(stack, mopts.bidirectional, featurizer.dim, spec=format_structure(stack[0]))  # now with vectors' size
    config = ModelConfig(
        stack[0],
        featurizer.dim,
        len(classes),
        featurizer.vocab_size,
        mopts.dropout,
        mopts.input_dropout,
        mopts.readout,
        **(
            {"layers": len(stack), "bidirectional": mopts.bidirectional, "stack": tuple((s,) * ndir for s in stack)}
            if len(stack) > 1 or mopts.bidirectional
            else {}
        ),
    )
    clf = TextClassifier(RationalClassifier(config, featurizer.rows), featurizer, classes)
    train = clf.encode(splits.train)
    if taught is not None:  # the transfer texts, unlabelled, and the teacher's probabilities of every text
        more = clf.encode(extra) if extra else None
        train = EncodedData(
            train.docs + (more.docs if more else []),
            torch.cat([train.labels, more.labels]) if more else train.labels,
            soften(torch.from_numpy(taught.probabilities), teach_opts.temperature),
            teach_opts.teacher_weight,
            teach_opts.temperature,
        )
        prep["teacher"] = taught.record
    dev = clf.encode(splits.dev, strict_labels=False)
    make = _seeded_model(
        config, featurizer.rows, seed, mopts.self_loop_bias, device, precision, mopts.vectors == "tuned"
    )
    return clf, train, dev, make, prep


@dataclass
class _Run:
    """A prepared run: validated options, the data as the model reads it, a model factory."""

    clf: TextClassifier  # vocabulary, classes, vectors; its model is replaced by each result
    train: EncodedData
    dev: EncodedData
    make: Callable[[], RationalClassifier]
    prep: dict
    cfg: TrainConfig
    mopts: Any
    opts: StructureOptions
    structure: tuple[int, ...]
    splits: Splits
    embeddings: str
    start: float
    initial: Any = None  # the structure record of the initial model (stacked models: per layer and direction)


def _prepare(
    splits,
    embeddings,
    patterns,
    reg_strength,
    target_transitions,
    train_config,
    structure_options,
    dropout,
    input_dropout,
    verbose,
    hf_options,
    options,
    readout=None,
) -> _Run:
    start = time.perf_counter()
    if not isinstance(splits, Splits):  # data in memory: a list of pairs, a DataFrame, a Dataset
        splits = splits_from(splits)
    options = options or RunOptions()
    embeddings = options.embeddings if embeddings is None else embeddings
    cfg = train_config or options.train
    mopts = replace(
        options.model,
        **{
            k: v
            for k, v in (
                ("patterns", patterns),
                ("dropout", dropout),
                ("input_dropout", input_dropout),
                ("readout", readout),
            )
            if v is not None
        },
    )
    opts = replace(
        structure_options or options.structure,
        **({"reg_strength": reg_strength} if reg_strength is not None else {}),
        **({"target_transitions": target_transitions} if target_transitions is not None else {}),
    )
    teach_opts = options.teach
    for part in (mopts, cfg, opts, teach_opts):  # the command line's checks, for the API and the estimator
        check_options(part)
    if (teach_opts.transfer or teach_opts.augment) and not teach_opts.teacher:
        raise ParameterError("teacher", "transfer texts and augmented copies need a teacher to label them")
    if not 0 <= teach_opts.teacher_weight <= 1:  # [0, 1]: the other kinds' checks are check_options'
        raise ParameterError("teacher_weight", f"must be in [0, 1], got {teach_opts.teacher_weight}")
    if mopts.vectors == "finetune" and is_contextual(embeddings):  # the default: transformer vectors stay frozen
        mopts = replace(mopts, vectors="frozen")
    if mopts.vectors == "tuned" and is_contextual(embeddings):
        raise ParameterError(
            "vectors", f"{mopts.vectors!r} needs static word vectors; {embeddings} are a transformer's"
        )
    if teach_opts.teacher and is_contextual(embeddings):
        raise ParameterError("teacher", "the student must read static word vectors (its teacher may read any)")
    if opts.target_transitions is not None and opts.reg_strength > 0:
        raise ParameterError("reg_strength", "give either reg_strength or target_transitions, not both")
    if isinstance(mopts.patterns, str):
        stack = parse_stack(mopts.patterns, mopts.layers)
        spec = mopts.patterns
    else:
        stack = repeat_layers(tuple(mopts.patterns), mopts.layers)
        spec = format_structure(tuple(mopts.patterns))
    check_size(stack, mopts.bidirectional, spec=spec)
    structure = stack[0]
    total = sum(map(sum, stack)) * (2 if mopts.bidirectional else 1)
    for t in opts.targets:
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= total:
            of = f"{{patterns}} {spec}" + (f" in {{layers}} {len(stack)}" if len(stack) > 1 else "")
            of += " and both directions" if mopts.bidirectional else ""
            raise ParameterError(
                "target_transitions",
                f"{t}: must be between 1 and the {total} transitions of {of}",
                "patterns",
                "layers",
            )
    if len(opts.targets) > 1 and opts.structure_search != "path":
        raise ParameterError(
            "target_transitions", "several targets need structure_search 'path' (one penalised run for all of them)"
        )
    if not splits.train:
        raise UserError("the training set is empty")
    for name in ("train", "dev", "test"):  # before training: a text that cannot be saved fails now
        for k, ex in enumerate(getattr(splits, name)):
            try:
                ex.text.encode("utf-8"), str(ex.label).encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"{name} example {k + 1}: not valid Unicode text (a lone surrogate)") from None
    classes = sorted({ex.label for ex in splits.train})
    if len(classes) < 2:
        raise UserError(f"the training data has only one class ({classes[0]!r}); a classifier needs at least two")
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    clf, train, dev, make, prep = _prepare_data(
        splits,
        embeddings,
        stack,
        classes,
        mopts,
        cfg.seed,
        verbose,
        hf_options,
        device,
        options.precision,
        options.teach,
    )
    learns_structure = opts.reg_strength > 0 or bool(opts.targets)
    if opts.depth_discount or mopts.vectors == "finetune":
        seeded = make

        def make() -> RationalClassifier:
            model = seeded()
            model.depth_discount = opts.depth_discount  # the penalty's weights by depth (penalty_weights)
            if mopts.vectors == "finetune" and isinstance(model.embeddings, StaticRows):
                if learns_structure:  # frozen while the structure is learned, tuned from pruning on
                    model.embeddings.tune_when_copied = True
                else:  # no structure phase: tuned all along
                    model.embeddings.tune_()
            return model

    initial = clf.model.config.structure_record()
    return _Run(clf, train, dev, make, prep, cfg, mopts, opts, structure, splits, embeddings, start, initial)


def _finish(
    run: _Run,
    model: RationalClassifier,
    last,
    learned=None,
    history: list[dict] | None = None,
    call: str = "sparse_rational.train_text_classifier",
) -> TextClassifier:
    """The classifier of ``model`` with its metrics (``learned``: a structure-learning result;
    ``history``: the epochs of the phases that made it)."""
    cfg, opts = run.cfg, run.opts
    clf = TextClassifier(model, run.clf.featurizer, run.clf.classes)
    metrics = Metrics(structure_initial=run.initial, encoding=run.prep.get("encoding"), reg_strength=0.0)
    if run.prep.get("teacher"):
        metrics.teacher = run.prep["teacher"]
    if learned is not None:
        metrics.reg_strength = learned.reg_strength
        metrics.structure_before_finetune = model.config.structure_record()
        metrics.transitions_before_pruning = sum(learned.structure_before_pruning)
        metrics.group_norms = learned.group_norms
        metrics.epsilon = opts.epsilon
        metrics.penalised_epochs = learned.penalised.epochs_run
        metrics.finetune_epochs = learned.finetune.epochs_run
        if learned.search:
            metrics.search = learned.search
        if opts.targets:
            metrics.target_transitions = opts.targets[0] if len(opts.targets) == 1 else None
    metrics.epochs, metrics.best_epoch, metrics.seconds_per_epoch = (
        last.epochs_run,
        last.best_epoch,
        last.seconds_per_epoch,
    )
    model.eval()
    final = model.config
    metrics.dev_accuracy = accuracy(model, run.dev) if len(run.dev) else None
    metrics.structure = final.structure_record()
    metrics.structure_summary = format_structure(metrics.structure)
    metrics.transitions, metrics.wfsas = final.transitions, len(final.all_lengths)
    metrics.parameters = model.num_model_parameters()
    metrics.long_wfsas = sum(1 for n in final.all_lengths if n >= 2)
    if isinstance(model.embeddings, StaticRows):
        metrics.vectors = "tuned" if model.embeddings.tuned else "frozen"
        if model.embeddings.tuned:
            metrics.tuned_vector_parameters = int(model.embeddings.weight.numel())
        model.embeddings.freeze_()  # trained: the tuned rows are the model's rows, as a loaded model holds them
    metrics.embeddings, metrics.train_size, metrics.dev_size = (
        run.embeddings,
        len(run.splits.train),
        len(run.splits.dev),
    )
    metrics.hyperparameters = {
        **asdict(cfg),
        "dropout": run.mopts.dropout,
        "input_dropout": run.mopts.input_dropout,
        "readout": run.mopts.readout,
        **({"layers": run.mopts.layers, "bidirectional": run.mopts.bidirectional} if run.clf.model.config.deep else {}),
        "self_loop_bias": run.mopts.self_loop_bias,
        "vectors": run.mopts.vectors,
        "reg_epochs": opts.reg_epochs,
        "penalty_update": opts.penalty_update,
        "depth_discount": opts.depth_discount,
        "structure_search": opts.structure_search,
    }
    if opts.structure_search == "path" and opts.targets:
        metrics.hyperparameters.update(
            path_start=opts.path_start, path_growth=opts.path_growth, path_warmup=opts.path_warmup
        )
    clf.metrics = metrics
    if run.splits.test:
        metrics.test_accuracy, metrics.test_size = clf.evaluate(run.splits.test), len(run.splits.test)
    metrics.history = history
    metrics.provenance = provenance(
        call, model.config.embedding_dim, model.classifier.bias.device, getattr(model, "precision", "fp32")
    )
    metrics.train_seconds = round(time.perf_counter() - run.start, 2)
    return clf


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
    run = _prepare(
        splits,
        embeddings,
        patterns,
        reg_strength,
        target_transitions,
        train_config,
        structure_options,
        dropout,
        input_dropout,
        verbose,
        hf_options,
        options,
        readout,
    )
    if len(run.opts.targets) > 1:
        raise ParameterError("target_transitions", "several targets give several models: use train_structure_path")
    phases = Phases(checkpoint, verbose=verbose, callbacks=callbacks)
    if run.opts.reg_strength > 0 or run.opts.targets:
        res = learn_structure(run.make, run.train, run.dev, run.cfg, run.opts, verbose=verbose, phases=phases)
        clf = _finish(run, res.model, res.finetune, res, phases.history())
    else:
        model = run.make()
        clf = _finish(run, model, phases.fit("train", model, run.train, run.dev, run.cfg), history=phases.history())
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
        from .plots import plot_path

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
    base = structure_options or (options or RunOptions()).structure
    opts = replace(
        base, target_transitions=tuple(sorted(set(target_transitions), reverse=True)), structure_search="path"
    )
    run = _prepare(
        splits, embeddings, patterns, None, None, train_config, opts, None, None, verbose, hf_options, options
    )
    phases = Phases(checkpoint, verbose=verbose, callbacks=callbacks)
    result = regularisation_path(phases, run.make, run.train, run.dev, run.cfg, run.opts, verbose)
    models = {}
    for target, learned in result.models.items():
        learned.search = []
        history = phases.history(lambda name, t=target: name in ("path", f"finetune:t{t}"))  # type: ignore[misc]
        models[target] = _finish(
            run, learned.model, learned.finetune, learned, history, "sparse_rational.train_structure_path"
        )
        models[target].metrics.target_transitions = target
        notify(callbacks, "on_train_end", models[target].metrics)
    options_json = {
        "targets": list(run.opts.targets),
        "path_start": run.opts.path_start,
        "path_growth": run.opts.path_growth,
        "path_warmup": run.opts.path_warmup,
        "penalty_update": run.opts.penalty_update,
        "epsilon": run.opts.epsilon,
        "reg_epochs": run.opts.reg_epochs,
        "patterns": run.initial,
        "lr": run.cfg.lr,
        "seed": run.cfg.seed,
    }
    return PathRun(models, result.path, result.snapshots, result.missed, result.penalised.seconds, options_json)

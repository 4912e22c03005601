"""What a training run reports: the typed contents of a model folder's ``metrics.json``.

:class:`Metrics` is a dataclass (one place that says what each number is) that also reads
like the JSON object it is saved as (``m["test_accuracy"]``, ``m.get("search")``), so code
and users that knew the dictionary keep working. Optional fields that a run did not
produce are left out of the JSON.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError, one_line
from .warn import warn

if TYPE_CHECKING:
    from .config import RunOptions
    from .data import Example
    from .learn import LearnResult
    from .prepare import Prepared
    from .train import FitResult


@dataclass(eq=False)
class Metrics(Mapping):
    # the model
    structure: list[int] | dict | None = None  # WFSA lengths of the final model (stacked: per layer and direction)
    structure_summary: str | None = None  # e.g. "2x4,1x2"
    transitions: int | None = None  # sum of the lengths: the x-axis of the paper's Figure 3
    wfsas: int | None = None
    parameters: int | None = None  # trainable parameters of the WFSAs and the classifier (no word vectors)
    long_wfsas: int | None = None  # WFSAs that keep 2 or more transitions (n-gram patterns, not word detectors)
    vectors: str | None = None  # static word vectors "frozen" or "tuned" (None: transformer vectors)
    tuned_vector_parameters: int | None = None  # the numbers of the tuned rows ([V, e]), when tuned
    teacher: dict | None = None  # how the model was taught (knowledge distillation), if it was
    structure_initial: list[int] | dict | None = None  # --patterns
    # accuracy
    dev_accuracy: float | None = None  # None without a dev set
    test_accuracy: float | None = None
    # the data and the vectors
    embeddings: str | None = None
    dataset: Any | None = None  # the --dataset spec or the files
    train_size: int | None = None
    dev_size: int | None = None
    test_size: int | None = None
    encoding: dict | None = None  # transformer vectors: encoding time and cache
    # training
    hyperparameters: dict | None = None
    epochs: int | None = None  # epochs of the last phase (finetuning after structure learning)
    best_epoch: int | None = None
    seconds_per_epoch: float | None = None
    train_seconds: float | None = None  # the whole run, vectors and evaluation included
    # structure learning (absent for a fixed structure)
    reg_strength: float | None = None
    epsilon: float | None = None
    transitions_before_pruning: int | None = None
    structure_before_finetune: list[int] | dict | None = None
    group_norms: list[list[float]] | None = None  # per WFSA, per state, before pruning
    penalised_epochs: int | None = None
    finetune_epochs: int | None = None
    search: list[dict] | None = None  # the lambda search: one entry per try
    target_transitions: int | None = None
    tuning: list[dict] | None = None  # train --tune: every assignment and its dev accuracy
    history: list[dict] | None = None  # every epoch of every phase: loss, penalty, dev accuracy, lr, seconds
    provenance: dict | None = None  # versions, kernel, threads, date, the call that made the model
    extra: dict = field(default_factory=dict)  # keys of a newer or foreign metrics.json

    def to_dict(self) -> dict:
        """The JSON object of ``metrics.json`` (optional fields that are None left out)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and not (f.name == "dev_accuracy" and self.structure is not None):
                continue  # a trained model without a dev set says dev_accuracy: null
            out[f.name] = value
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, raw: dict) -> Metrics:
        """Lenient: ``metrics.json`` is informational; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in raw.items() if k in names}, extra={k: v for k, v in raw.items() if k not in names}
        )

    @classmethod
    def of_run(
        cls,
        model: Any,
        options: RunOptions,
        data: Prepared,
        last: FitResult,
        learned: LearnResult | None = None,
        history: list[dict] | None = None,
        sizes: tuple[int, int] = (0, 0),
    ) -> Metrics:
        """What a training run says of its result ``model`` (a ``RationalClassifier``):
        its structure and size, the options it ran with, the epochs of ``last`` (the fit
        that made it) and, after structure learning, what ``learned`` found. ``sizes``: the
        training and dev examples. The accuracies, the provenance and the run's time are
        measured by the caller (they need the classifier and the clock), and so is how its
        static word vectors trained (``vectors``), which the caller reads before freezing them."""
        train, mopts, opts = options.train, options.model, options.structure
        final = model.config
        m = cls(structure_initial=data.initial, encoding=data.prep.get("encoding"), reg_strength=0.0)
        m.teacher = data.prep.get("teacher") or None
        if learned is not None:
            m.reg_strength = learned.reg_strength
            m.structure_before_finetune = final.structure_record()
            m.transitions_before_pruning = sum(learned.structure_before_pruning)
            m.group_norms = learned.group_norms
            m.epsilon = opts.epsilon
            m.penalised_epochs = learned.penalised.epochs_run
            m.finetune_epochs = learned.finetune.epochs_run
            m.search = learned.search or None
            if opts.targets:
                m.target_transitions = opts.targets[0] if len(opts.targets) == 1 else None
        m.epochs, m.best_epoch, m.seconds_per_epoch = last.epochs_run, last.best_epoch, last.seconds_per_epoch
        m.structure = final.structure_record()
        m.structure_summary = _summary(m.structure)
        m.transitions, m.wfsas = final.transitions, len(final.all_lengths)
        m.parameters = model.num_model_parameters()
        m.long_wfsas = sum(1 for n in final.all_lengths if n >= 2)
        m.embeddings, (m.train_size, m.dev_size) = options.embeddings, sizes
        m.hyperparameters = {
            **dataclasses.asdict(train),
            "dropout": mopts.dropout,
            "input_dropout": mopts.input_dropout,
            "readout": mopts.readout,
            **({"layers": mopts.layers, "bidirectional": mopts.bidirectional} if data.clf.model.config.deep else {}),
            "self_loop_bias": mopts.self_loop_bias,
            "vectors": mopts.vectors,
            "reg_epochs": opts.reg_epochs,
            "penalty_update": opts.penalty_update,
            "depth_discount": opts.depth_discount,
            "structure_search": opts.structure_search,
        }
        if opts.structure_search == "path" and opts.targets:
            m.hyperparameters.update(
                path_start=opts.path_start, path_growth=opts.path_growth, path_warmup=opts.path_warmup
            )
        m.history = history
        return m

    # -- reads like the saved dictionary -------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        d = self.to_dict()
        return d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in {f.name for f in dataclasses.fields(self)} - {"extra"}:
            setattr(self, key, value)
        else:
            self.extra[key] = value


__all__ = ["Metrics"]


def _summary(structure: Any) -> str:
    from .structure import format_structure  # lazy: start-up (torch; metrics.json is read without it)

    return format_structure(structure)


def rounded(value: Any, digits: int = 6) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (0.7350000143051147 -> 0.735),
    through dicts and lists: float32 noise is not information."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def check_labels(classes: Sequence[str], examples: Sequence[Example]) -> None:
    """Labels the model does not know count as errors: a warning names them and their
    counts; when the model knows none of the data's labels, a one-line UserError."""
    known = set(classes)
    unseen = Counter(str(ex.label) for ex in examples if ex.label not in known)
    if not unseen:
        return
    shown = ", ".join(f"{one_line(label)[:40]!r} x{n}" for label, n in unseen.most_common(10))
    more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
    names = one_line(", ".join(classes), 200)
    if sum(unseen.values()) == len(examples):
        raise UserError(
            f"none of the data's labels is one the model knows (its classes: {names}); the data has {shown}{more}"
        )
    warn(
        f"{sum(unseen.values())} of {len(examples)} examples have labels the model does not know, "
        f"counted as errors: {shown}{more} (its classes: {names})"
    )


def class_indices(classes: Sequence[str], examples: Sequence[Example]) -> np.ndarray:
    """The class index of every example's label, -1 for a label the model does not know
    (:func:`classification_report` counts it as an error)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index.get(ex.label, -1) for ex in examples), np.int64, len(examples))


def classification_report(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, and the confusion
    matrix ``[true][predicted]`` of class indices ``truth`` and ``predicted`` (a true index
    of -1, a label unseen in training, counts as an error and in ``unseen_labels``)."""
    k = len(classes)
    seen = truth >= 0
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth[seen], predicted[seen]), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted_i = int((predicted == i).sum())  # unseen-label texts predicted i are false positives
        support = int(confusion[i].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support or predicted_i:
            f1s.append(f1)
    n = len(truth)
    return rounded(
        {
            "accuracy": float((truth == predicted).sum() / n) if n else 0.0,
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "examples": n,
            "per_class": per_class,
            "confusion_matrix": {"classes": list(classes), "rows_true_columns_predicted": confusion.tolist()},
            "unseen_labels": int((~seen).sum()),
        }
    )

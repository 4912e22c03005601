"""The one tree of configuration: every default of the library and the command line lives here.

Frozen dataclasses, each field with its default and its help text (``metadata["help"]``).
The command line builds its options from these fields (:func:`add_arguments`), so a
default is written once. ``ModelConfig`` (model.py) is the *saved* structure of one model;
the options here are how a run makes one.

    RunOptions
      embeddings         which vectors the WFSAs read
      model: ModelOptions      patterns, dropout, input_dropout
      train: TrainConfig       optimisation, early stopping, schedule, memory bounds
      structure: StructureOptions  group lasso, pruning, the lambda search
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import argtypes
from .errors import ParameterError


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


#: ``negation_pairs="auto"``: this many pairs per training text when the two classes are named
#: positive/negative or pos/neg (a sentiment task; a negated sentence of another task need not
#: change class) and there are at least ``AUTO_NEGATION_MIN_TEXTS`` training texts, none
#: otherwise. Measured on dev, seeds 1-3 (docs/results/accuracy/README.md): level on the four
#: HATN domains (4,660 texts each, -0.3 points) with the negation sets 58 -> 84 %; 1.9 points
#: lower on the four Blitzer Amazon domains (1,600 texts each), where they taught little.
AUTO_NEGATION_PAIRS = 0.25
AUTO_NEGATION_MIN_TEXTS = 4000
VECTORS = ("frozen", "tuned", "finetune")  # what training does to static word vectors (--vectors)


@dataclass(frozen=True)
class ModelOptions:
    """What a new model looks like before structure learning."""

    patterns: str = _opt(
        "24x4", "WFSAs (per layer and direction), e.g. 24x4 or 6x1,6x2,6x3,6x4; one per layer: 24x4/12x2"
    )
    dropout: float = _opt(0.2, "dropout on the WFSA scores", kind="probability")
    input_dropout: float = _opt(0.2, "variational dropout on the word vectors", kind="probability")
    readout: str = _opt(
        "mean",
        "a WFSA's score: its states at the document's end ('final', the paper's), "
        "or their mean or max over the document (mean, with the default --vectors, chosen on dev accuracy "
        "over the four HATN domains: docs/results/defaults.md)",
        choices=("final", "mean", "max"),
    )
    self_loop_bias: float = _opt(
        0.0, "initial bias of every self-loop (f = sigmoid(bias): larger remembers longer)", kind="float"
    )
    layers: int = _opt(
        1, "stacked layers of WFSAs (layer k+1 reads the per-step scores of layer k's WFSAs)", kind="positive"
    )
    bidirectional: bool = _opt(False, "a second set of WFSAs per layer reads each document right to left")
    vectors: str = _opt(
        "finetune",
        "static word vectors 'frozen' (the paper's), 'tuned' (trained in every phase with their own "
        "--vector-lr, pulled toward their start by --vector-pull; saved with the model) or 'finetune' "
        "(frozen while the structure is learned, tuned while the pruned model is finetuned; chosen on dev "
        "accuracy: docs/results/defaults.md)",
        choices=VECTORS,
    )


@dataclass(frozen=True)
class TrainConfig:
    """One training phase: Adam, length-bucketed batches, clipping, early stopping, schedule."""

    epochs: int = _opt(100, "max epochs", kind="positive")
    patience: int = _opt(10, "early-stopping patience (epochs without a better dev accuracy)", kind="positive")
    batch_size: int = _opt(64, "documents per batch", kind="positive")
    lr: float = _opt(0.01, "Adam's learning rate", kind="nonneg")
    weight_decay: float = _opt(0.0, "Adam's weight decay", kind="nonneg")
    clip: float = _opt(2.0, "gradient-norm clipping (0: off)", kind="nonneg")
    seed: int = _opt(0, "random seed of the weights, batches and dropout", kind="seed")
    lr_schedule: bool = _opt(True, "ReduceLROnPlateau(0.5) on the selection score while finetuning", cli=False)
    lr_patience: int = _opt(
        5,
        "epochs without improvement before the learning rate is halved (keep it below "
        "the patience, or the schedule never acts)",
        kind="positive",
    )
    select_on: str = _opt(
        "accuracy",
        "what early stopping, the best epoch and the schedule follow on the dev set: "
        "'accuracy', 'loss' (cross-entropy) or 'smoothed' (accuracy over the last 3 epochs)",
        choices=("accuracy", "loss", "smoothed"),
    )
    vector_lr: float = _opt(0.001, "Adam's learning rate of tuned word vectors (--vectors tuned)", kind="nonneg")
    vector_pull: float = _opt(
        0.0,
        "decoupled pull of tuned word vectors toward their start, per unit of --vector-lr "
        "(rows -= vector_lr * pull * (rows - start) after every step)",
        kind="nonneg",
    )
    max_tokens: int = _opt(
        20_000, "cut training documents to this many tokens, bounding memory (0: never)", kind="nonneg_int"
    )
    batch_tokens: int = _opt(2**19, "at most this many padded tokens per batch (0: no limit)", cli=False)
    contrast_pairs: float = _opt(
        0.0,
        "labelled 'S1, but S2' texts per training text (a fraction: for that share of the texts), S2 one "
        "of its sentences, S1 one of a text of another label (what follows 'but' decides; data/augment.py)",
        kind="nonneg",
    )
    negation_pairs: float | str = _opt(
        "auto",
        "labelled negation pairs per training text (a fraction: for that share of the texts): one of its "
        "sentences and the same sentence negated ('is great' -> 'is not great', 'not good' -> 'good') "
        f"with the other label; two classes only; 'auto': {AUTO_NEGATION_PAIRS} when the classes are "
        f"positive/negative or pos/neg and there are {AUTO_NEGATION_MIN_TEXTS} training texts or more, "
        "else none (data/augment.py)",
        kind="nonneg_or_auto",
    )


#: Where the regularisation path takes a target's snapshot: at the step nearest to the target
#: within its tolerance (the path before this rule took the first step inside the band, its upper
#: edge). Part of a path trial's identity in ``reproduce``, so records of the old rule are not reused.
PATH_SNAPSHOT = "nearest"


@dataclass(frozen=True)
class StructureOptions:
    """Structure learning: the group-lasso penalty, pruning, and the authors' lambda search."""

    reg_strength: float = _opt(0.0, "group-lasso lambda (0: no penalty)", kind="nonneg")
    target_transitions: int | tuple[int, ...] | None = _opt(
        None,
        "learn the structure for N transitions; several targets (80,60,40,20) need --structure-search path",
        kind="targets",
    )
    reg_epochs: int = _opt(30, "epochs of the penalised phase (with the path: its longest length)", kind="positive")
    epsilon: float = _opt(0.1, "prune states whose group norm is below this", kind="nonneg")
    depth_discount: float = _opt(
        1.0,
        "the penalty of the i-th state of a WFSA is weighted i^-D (0: every state alike, the paper's); "
        "D > 0 lets patterns of several words survive a small budget (1: chosen on dev accuracy, "
        "docs/results/defaults.md)",
        kind="nonneg",
    )
    penalty_update: str = _opt(
        "proximal",
        "how the penalty acts: 'gradient' (in the loss, the paper's) or "
        "'proximal' (group soft-threshold after each step: exact zeros, any lr)",
        choices=("gradient", "proximal"),
    )
    structure_search: str = _opt(
        "path",
        "how a target size is reached: 'lambda' (the authors' search, one "
        "penalised run per try) or 'path' (one run, lambda growing, every target)",
        choices=("lambda", "path"),
    )
    path_start: float = _opt(1e-4, "the path's first lambda", kind="positive_float")
    path_growth: float = _opt(
        1.25, "the path multiplies lambda by this every epoch (smoothly, step by step)", kind="growth"
    )
    path_warmup: int = _opt(
        2, "epochs without penalty before the path starts (the signal is learned first)", kind="nonneg_int"
    )
    search_start: float = _opt(8e-6, "first lambda of the search", cli=False)
    search_max_tries: int = _opt(25, "penalised runs before the search gives up", cli=False)
    search_bounds: tuple[float, float] = _opt((1e-9, 1e2), "lambda stays in these bounds", cli=False)
    search_tolerance: int | None = _opt(None, "accepted distance to the target (None: max(2, 10 %))", cli=False)

    @property
    def learns_structure(self) -> bool:
        """A penalised phase runs: a positive lambda, or a target size."""
        return self.reg_strength > 0 or bool(self.targets)

    @property
    def targets(self) -> tuple[int, ...]:
        """The target sizes, largest first (empty without a target)."""
        t = self.target_transitions
        if t is None:
            return ()
        return tuple(sorted({t} if isinstance(t, int) else set(t), reverse=True))

    def tolerance(self, target: int | None = None) -> int:
        """Accepted distance to ``target`` (default: the single target): ``max(2, 10 %)``."""
        if target is None:
            assert isinstance(self.target_transitions, int)
            target = self.target_transitions
        if self.search_tolerance is not None:
            return self.search_tolerance
        return max(2, round(0.1 * target))


@dataclass(frozen=True)
class TeachOptions:
    """Learning from a teacher (knowledge distillation, see :mod:`sparse_rational.teach`)."""

    teacher: str | None = _opt(
        None, "a model folder of ours (e.g. one on hf:minilm) or 'tfidf' (fitted here on the training split)"
    )
    transfer: str | None = _opt(None, "unlabelled texts (one per line) the teacher labels for the student")
    augment: int = _opt(
        0, "augmented copies of each training text the teacher labels (Tang et al. 2019)", kind="nonneg_int"
    )
    teacher_weight: float = _opt(
        0.5, "the teacher's share of the loss on labelled texts (unlabelled ones: the teacher only)", kind="unit"
    )
    temperature: float = _opt(2.0, "softens the teacher's and the student's probabilities", kind="positive_float")


@dataclass(frozen=True)
class RunOptions:
    """Everything one ``train`` run is made of (besides the data)."""

    embeddings: str = "glove-6b-50d"
    model: ModelOptions = field(default_factory=ModelOptions)
    train: TrainConfig = field(default_factory=TrainConfig)
    structure: StructureOptions = field(default_factory=StructureOptions)
    teach: TeachOptions = field(default_factory=TeachOptions)
    device: str = "auto"  # where the model computes: auto, cpu, cuda, cuda:N (see device.py)
    precision: str = "fp32"  # fp32; on CUDA also bf16 / fp16 for the input projection

    def override(self, **explicit: Any) -> RunOptions:
        """These options with the explicit arguments of a call written over them; ``None``
        means "not given" and keeps the option. A name is a field of ``RunOptions``
        (``embeddings``, ``device``, ``precision``, or a whole group: ``model``, ``train``,
        ``structure``, ``teach``) or a field of one group (``patterns``, ``dropout``,
        ``readout``, ``reg_strength``, ``target_transitions``, ``seed``, ...: the groups'
        field names are distinct). Groups are replaced first, then single fields, so
        ``override(structure=s, reg_strength=0.1)`` is ``s`` with lambda 0.1."""
        given = {k: v for k, v in explicit.items() if v is not None}
        top = {f.name for f in dataclasses.fields(self)}
        out = dataclasses.replace(self, **{k: v for k, v in given.items() if k in top})
        groups = {name: {f.name for f in dataclasses.fields(getattr(out, name))} for name in _GROUPS}
        for key in given.keys() - top:
            owner = next((g for g, names in groups.items() if key in names), None)
            if owner is None:
                raise TypeError(f"RunOptions.override: unknown option {key!r}")
        for group, names in groups.items():
            fields = {k: v for k, v in given.items() if k in names}
            if fields:
                out = dataclasses.replace(out, **{group: dataclasses.replace(getattr(out, group), **fields)})
        return out


#: the option groups of :class:`RunOptions`, whose field names :meth:`RunOptions.override` takes
_GROUPS = ("model", "train", "structure", "teach")


def default(cls, name: str) -> Any:
    """The default of field ``name`` of the config class ``cls``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]


def check(options: Any) -> None:
    """Check every field of a config dataclass (``ModelOptions``, ``TrainConfig``, ...) that
    has a ``kind`` as the command line checks it (the same parsers, :mod:`.argtypes`), so the
    API and the estimator refuse what the command line refuses, with a
    :class:`~sparse_rational.errors.ParameterError` naming the parameter."""
    parsers = {
        "positive": argtypes.positive_int,
        "nonneg": argtypes.nonneg_float,
        "float": argtypes.finite_float,
        "nonneg_or_auto": argtypes.nonneg_float,  # or "auto", let through below
        "probability": argtypes.probability,
        "seed": argtypes.seed,
        "nonneg_int": argtypes.nonneg_int,
        "positive_float": argtypes.positive_float,
        "growth": argtypes.growth,
        "unit": argtypes.nonneg_float,  # and <= 1, which the run checks
    }
    for f in dataclasses.fields(options):
        parse = parsers.get(f.metadata.get("kind", ""))
        value = getattr(options, f.name)
        if parse is None or (f.metadata["kind"] == "nonneg_or_auto" and value == "auto"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f.name, f"expected a number, got {value!r}")
        integer = f.metadata["kind"] in ("positive", "seed", "nonneg_int")
        if integer and not isinstance(value, int):
            raise ParameterError(f.name, f"expected an integer, got {value!r}")
        try:
            parse(repr(value))
        except argparse.ArgumentTypeError as exc:
            raise ParameterError(f.name, str(exc)) from None
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(options) if "choices" in f.metadata}
    for name, allowed in choices.items():
        if getattr(options, name) not in allowed:
            raise ParameterError(name, f"{getattr(options, name)!r} is not one of {', '.join(allowed)}")


def flag(name: str) -> str:
    """The command-line spelling of a parameter: ``reg_strength`` -> ``--reg-strength``."""
    return "--" + name.replace("_", "-")


def add_arguments(
    parser,
    cls,
    names: list[str] | None = None,
    types: dict | None = None,
    exclude: tuple[str, ...] = (),
    absent_unless_given: tuple[str, ...] = (),
) -> None:
    """Add ``--flag`` options for the fields of ``cls`` (all with ``metadata["cli"]`` not
    False but ``exclude``, or ``names``), with the field's default and help; ``types`` maps
    a field's ``kind`` to an argparse type. Fields in ``absent_unless_given`` are missing from
    the parsed namespace unless given (their default still applies, see
    :func:`from_namespace`), so that a command can tell an explicit choice from the default."""
    types = types or {}
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        if names is None and (f.metadata.get("cli", True) is False or f.name in exclude):
            continue
        value = default(cls, f.name)
        help_text = f.metadata.get("help", "")
        if value is not None:
            help_text += f" (default {value})"
        kind = f.metadata.get("kind")
        if isinstance(value, bool):  # a switch: --flag turns it on
            parser.add_argument(flag(f.name), dest=f.name, action="store_true", help=help_text.replace("%", "%%"))
            continue
        extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        parser.add_argument(
            flag(f.name),
            dest=f.name,
            type=types.get(kind, type(value) if value is not None else str),
            default=argparse.SUPPRESS if f.name in absent_unless_given else value,
            help=help_text.replace("%", "%%"),
            **extra,
        )


def from_namespace(cls, args: argparse.Namespace, **overrides: Any):
    """An instance of ``cls`` from the parsed options that bear its field names."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})

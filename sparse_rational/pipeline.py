"""The Python API: train a text classifier from labelled texts, save, load, predict.

A saved model is a folder (Hugging Face layout, no pickle anywhere)::

    config.json         format, model config (with the structure), classes, tokens, embeddings
    model.safetensors   wfsa.w [e,N], wfsa.v [e,N], wfsa.b [N], classifier.weight [C,d],
                        classifier.bias [C], embeddings [V,e] (only the model's own vocabulary)
    vocab.txt           one token per line; line i is row i of ``embeddings``
    metrics.json        accuracies, structure, transitions, parameters, timings, every
                        epoch (history) and provenance (versions, kernel, the call)
    README.md           the model card: what the model is, data, metrics, how made, limits
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from . import validate
from .callbacks import notify
from .card import CARD_MARKER, model_card
from .config import RunOptions, StructureOptions, TrainConfig, default
from .config import check as check_options
from .data import Example, Splits, examples_from, splits_from, texts_from
from .device import check_precision, resolve_device
from .embeddings.featurizer import (
    CHARS_PER_TOKEN,  # noqa: F401  (re-exported: where texts are cut)
    ContextualVectors,
    Featurizer,
    StaticVectors,
    build_featurizer,
)
from .embeddings.hf_options import is_contextual
from .embeddings.rows import RowTable, StaticRows
from .embeddings.transformer import ContextualEncoder, TransformerOptions
from .errors import ParameterError, UserError, one_line
from .fileio import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, is_inside_cwd
from .folded import FoldedClassifier
from .learn import learn_structure, regularisation_path
from .log import NOTICE, get_logger
from .metrics import Metrics, classification_report, rounded
from .model import ModelConfig, RationalClassifier
from .ops import forced_impl
from .phases import Phases
from .provenance import provenance
from .structure import check_size, format_structure, parse_stack, repeat_layers
from .teach import teach
from .train import EncodedData, accuracy, predict_proba, soften
from .vocab import Vocabulary
from .warn import warn

_log = get_logger(__name__)

FORMAT = validate.FORMAT
DEFAULT_MAX_TOKENS = default(TrainConfig, "max_tokens")  # texts read at prediction are cut like training ones
CONFIG, WEIGHTS, VOCAB, METRICS = validate.CONFIG, validate.WEIGHTS, validate.VOCAB, validate.METRICS
CARD = "README.md"  # the model card (card.py); folders written before it existed have none
MODEL_FILES = frozenset({CONFIG, WEIGHTS, VOCAB, METRICS, CARD})
PATH_JSON = "path.json"


def is_model_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder this package wrote: its ``config.json`` carries our
    format marker and it holds nothing but the files of a model folder; or it is the folder
    of a regularisation path (``path.json``, ``path.png`` and such model folders)."""
    path = Path(path)
    try:
        names = {p.name for p in path.iterdir()}
        if PATH_JSON in names:
            others = names - {PATH_JSON, "path.png"}
            return (
                all(n.startswith("t") and is_model_folder(path / n) for n in others)
                and (validate.peek_json(path / PATH_JSON) or {}).get("format") == "sparse-rational-path/1"
            )
        if CONFIG not in names or not names <= MODEL_FILES:
            return False
        if CARD in names and not _is_our_card(path / CARD):  # the user's notes are not ours to replace
            return False
    except OSError:
        return False
    cfg = validate.peek_config(path)
    return cfg is not None and cfg.get("format") == FORMAT


def _texts(texts) -> list[str]:
    """``texts`` as a list of strings (a list of them is taken as it is; see :func:`texts_from`)."""
    if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
        return texts
    return texts_from(texts)


def _is_our_card(path: Path) -> bool:
    """True if ``path`` is a model card this package wrote (its first line is the marker)."""
    try:
        first = validate.read_file(path, validate.MAX_JSON_BYTES).split(b"\n", 1)[0]
    except UserError:
        return False
    return first == CARD_MARKER.encode("utf-8")


def check_out_folder(path: str | os.PathLike, option: str = "out", probe: bool = False) -> bool:
    """Refuse an output folder whose replacement could lose anything that this package did
    not write; True if ``path`` is an earlier model folder that will be replaced.

    A link is written through: the folder it points to is the one replaced (said once, at
    NOTICE). With ``probe`` (before a run that saves at its end), what saving will do is
    tried now: a mount point, which cannot be renamed, is refused, and so is a folder whose
    parent refuses new entries; an empty folder is replaced by an empty one, as saving will."""
    link = Path(path)
    path = Path(os.path.realpath(link)) if os.path.islink(link) else link
    if path is not link and probe:
        _log.log(NOTICE, f"{option} {link} is a link: the model is written into its target {path}")
    replacing = False
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{option} {link}: exists and is not a folder; refusing to overwrite it")
        if is_inside_cwd(path):
            raise UserError(f"{option} {link}: is the current folder or one of its parents; choose a new folder")
        if any(path.iterdir()):
            if not is_model_folder(path):
                raise UserError(
                    f"{option} {link}: exists and is not a sparse-rational model folder (or holds other "
                    "files); refusing to replace it"
                )
            replacing = True
    if probe:
        _probe_replace(path, option)
    return replacing


def _probe_replace(path: Path, option: str) -> None:
    """Try now the renames that :func:`~sparse_rational.fileio.atomic_directory` will do at
    the end of a run (see :func:`check_out_folder`); a one-line UserError if they would fail."""
    import tempfile

    path = Path(os.path.abspath(path))
    if os.path.ismount(path):
        raise UserError(
            f"{option} {path}: is a mount point, which saving cannot replace (it renames a new folder "
            "into place); give a folder inside it"
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # atomic_directory makes the missing ones
        parent = parent.parent
    probe = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)  # an OSError names parent
    try:
        if parent == path.parent and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            mode = stat.S_IMODE(path.stat().st_mode)
            os.chmod(probe, mode)
            os.replace(probe, path)  # the rename saving will do, onto the empty folder
    except OSError as exc:
        raise UserError(
            f"{option} {path}: saving could not replace this folder ({exc.strerror or exc}); "
            "give a folder inside it or a new one"
        ) from None
    finally:
        if os.path.isdir(probe):
            os.rmdir(probe)


@dataclass(init=False)
class TextClassifier:
    """A trained model with everything needed to read raw text: the model computes on
    vectors, and ``featurizer`` (:mod:`~sparse_rational.embeddings.featurizer`) says which
    vectors a text is (static word vectors or a frozen transformer's).

    ``TextClassifier(model, featurizer, classes, metrics=...)``. The earlier form
    ``TextClassifier(model, vocab, classes, embeddings_source, metrics, encoder=None)`` (a
    :class:`~sparse_rational.vocab.Vocabulary`, or None and a transformer ``encoder``) is
    still accepted."""

    model: RationalClassifier
    featurizer: Featurizer
    classes: list[str]
    metrics: Metrics
    truncated_texts: int  # texts cut by ``max_tokens`` in encode() so far
    _folded: Any = field(default=None, init=False, repr=False, compare=False)  # (key, FoldedClassifier) of folded()

    def __init__(
        self,
        model: RationalClassifier,
        featurizer: Featurizer | Vocabulary | None = None,
        classes: Sequence[str] = (),
        embeddings_source: str | None = None,
        metrics: Metrics | dict | None = None,
        *,
        vocab: Vocabulary | None = None,
        encoder: ContextualEncoder | None = None,
        truncated_texts: int = 0,
    ):
        if isinstance(featurizer, Vocabulary) or (featurizer is None and vocab is not None):
            featurizer = StaticVectors(
                cast(Vocabulary, vocab if vocab is not None else featurizer),
                embeddings_source or "",
                cast(StaticRows, model.embeddings),
            )
        elif featurizer is None and encoder is not None:
            featurizer = ContextualVectors(encoder, cast(RowTable | None, model.embeddings))
        elif featurizer is None:
            raise TypeError("TextClassifier needs a featurizer (or a vocabulary, or a transformer encoder)")
        if isinstance(featurizer, StaticVectors) and isinstance(model.embeddings, StaticRows):
            featurizer = featurizer.owning(model.embeddings)  # the rows the model reads are the featurizer's
        self.model = model
        self.featurizer = cast(Featurizer, featurizer)
        self.classes = list(classes)
        self.metrics = metrics if isinstance(metrics, Metrics) else Metrics.from_dict(metrics or {})
        self.truncated_texts = truncated_texts

    @property
    def vocab(self) -> Vocabulary | None:
        """The vocabulary of a model on static word vectors; None for transformer vectors."""
        return self.featurizer.vocab

    @property
    def encoder(self) -> ContextualEncoder | None:
        """The transformer encoder of a model on transformer vectors; None for static ones."""
        return getattr(self.featurizer, "encoder", None)

    @property
    def embeddings_source(self) -> str:
        """What the model's vectors come from (``glove-6b-50d``, a file, ``hf:...``)."""
        return self.featurizer.source

    # -- inference -------------------------------------------------------------------------
    def _labels(self, examples: Sequence[Example] | Sequence[str], strict_labels: bool) -> torch.Tensor:
        label_index = {c: i for i, c in enumerate(self.classes)}
        labels = []
        for ex in examples:
            label = None if isinstance(ex, str) else ex.label
            if label is not None and label not in label_index and strict_labels:
                raise UserError(f"label {label!r} was not seen in training (classes: {', '.join(self.classes)})")
            labels.append(label_index.get(label, -1) if label is not None else -1)
        return torch.tensor(labels, dtype=torch.long)

    def _read(
        self, examples: Sequence[Example] | Sequence[str], strict_labels: bool = True, max_tokens: int = 0
    ) -> tuple[EncodedData, Any]:
        """The documents as row ids, and the rows they index (the featurizer's). Texts longer than
        ``max_tokens`` tokens are cut like training documents (first ``max_tokens - 1``
        tokens and ``</s>``; the text is cut to ``max_tokens * CHARS_PER_TOKEN``
        characters first, so memory stays bounded); ``truncated_texts`` counts them."""
        labels = self._labels(examples, strict_labels)
        features = self.featurizer.encode([ex if isinstance(ex, str) else ex.text for ex in examples], max_tokens)
        self.truncated_texts += features.truncated
        own = features.rows is self.featurizer.rows  # None: the rows the model reads (the same object)
        return EncodedData(features.docs, labels), None if own else features.rows

    def encode(
        self, examples: Sequence[Example] | Sequence[str], strict_labels: bool = True, max_tokens: int = 0
    ) -> EncodedData:
        """Documents as row ids (see :meth:`_read`): of the model's own rows, or of the
        featurizer's table; texts a transformer featurizer's table lacks get rows of a new
        table that extends it, which :meth:`predict_proba` and :meth:`evaluate` read."""
        return self._read(examples, strict_labels, max_tokens)[0]

    def predict_proba(self, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> np.ndarray:
        """Probabilities ``[n, C]`` (columns in the order of ``classes``). ``texts``: a list,
        an array or a pandas Series of strings (or a DataFrame / Dataset with a ``text``
        column). Texts longer than ``max_tokens`` tokens are cut as training documents are
        (0: read them whole); ``truncated_texts`` counts them."""
        return self._score(texts, max_tokens, known=False)[0]

    def predict_details(
        self, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_proba` and :meth:`known_tokens` of ``texts``, each text read once."""
        return self._score(texts, max_tokens, known=True)

    def _score(self, texts, max_tokens: int, known: bool) -> tuple[np.ndarray, np.ndarray | None]:
        texts = _texts(texts)
        folded = self.folded()
        if folded is not None:  # static vectors: the folded table, in numpy (same numbers within 1e-5)
            before = folded.truncated_texts
            probs, counts = folded.predict_details(texts, max_tokens)
            self.truncated_texts += folded.truncated_texts - before
            return probs, counts if known else None
        if not texts:
            return np.zeros((0, len(self.classes)), np.float32), self._known([]) if known else None
        data, rows = self._read(texts, max_tokens=max_tokens)
        probs = predict_proba(self.model, data, rows=rows).numpy()
        return probs, self._known(data.docs) if known else None

    def folded(self) -> FoldedClassifier | None:
        """This model on static vectors with its projection folded into the vocabulary
        (:mod:`~sparse_rational.folded`), built on first use and again whenever a tensor of
        the model has changed; None for transformer vectors, or when a recurrence kernel is
        asked for (``impl`` or ``$SPARSE_RATIONAL_IMPL``: the PyTorch path then runs it)."""
        if (
            self.vocab is None
            or self.model.config.deep  # stacked or bidirectional: the PyTorch model reads it
            or self.model.wfsa.impl != "auto"
            or forced_impl() is not None
            or self.device.type != "cpu"
        ):
            return None
        tensors = [*self.model.parameters(), *self.model.buffers()]
        key = (id(self.model), tuple((id(t), t._version) for t in tensors))
        cached = self._folded
        if cached is None or cached[0] != key:
            cached = (key, FoldedClassifier.from_classifier(self))
            self._folded = cached
        return cached[1]

    def known_tokens(self, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> np.ndarray | None:
        """How many of the tokens the model reads of each text its vocabulary knows (``<s>``,
        ``</s>`` and unknown words not counted; a text is cut at ``max_tokens`` as for
        prediction); 0 means the answer is about the class prior. None for a model on
        transformer vectors, which has a vector for every word piece."""
        if self.vocab is None:
            return None
        return self._known(self.featurizer.encode(_texts(texts), max_tokens).docs)

    def _known(self, docs: Sequence[torch.Tensor]) -> np.ndarray | None:
        vocab = self.vocab
        if vocab is None:
            return None
        special = torch.tensor([vocab.index[t] for t in (vocab.unk, vocab.bos, vocab.eos) if t is not None])
        return np.array([int((~torch.isin(d, special)).sum()) for d in docs], dtype=np.int64)

    def predict_dicts(self, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[dict]:
        """One dict per text: ``{"label", "probabilities": {class: p}}`` and, on static
        vectors, ``"known_tokens"`` (see :meth:`known_tokens`)."""
        probs, known = self.predict_details(texts, max_tokens)
        out = []
        for k, row in enumerate(probs):
            item: dict[str, Any] = {
                "label": self.classes[int(row.argmax())],
                "probabilities": dict(zip(self.classes, row.tolist())),
            }
            if known is not None:
                item["known_tokens"] = int(known[k])
            out.append(item)
        return out

    def predict(self, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(texts, max_tokens).argmax(1)]

    def evaluate(self, examples: Sequence[Example]) -> float:
        """Accuracy on labelled examples (a label unseen in training counts as an error):
        :class:`Example` objects, ``(text, label)`` pairs, a DataFrame or a Dataset."""
        if not isinstance(examples, list) or not all(isinstance(ex, Example) for ex in examples):
            examples = examples_from(examples, name="examples")
        if not examples:
            raise UserError("no examples to evaluate")
        self._check_labels(examples)
        data, rows = self._read(examples, strict_labels=False)
        return accuracy(self.model, data, rows)

    def _check_labels(self, examples: Sequence[Example]) -> None:
        """Labels the model does not know count as errors: a warning names them and their
        counts; when the model knows none of the data's labels, a one-line UserError."""
        known = set(self.classes)
        unseen = Counter(str(ex.label) for ex in examples if ex.label not in known)
        if not unseen:
            return
        shown = ", ".join(f"{one_line(label)[:40]!r} x{n}" for label, n in unseen.most_common(10))
        more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
        classes = one_line(", ".join(self.classes), 200)
        if sum(unseen.values()) == len(examples):
            raise UserError(
                f"none of the data's labels is one the model knows (its classes: {classes}); the data has {shown}{more}"
            )
        warn(
            f"{sum(unseen.values())} of {len(examples)} examples have labels the model does not know, "
            f"counted as errors: {shown}{more} (its classes: {classes})"
        )

    def evaluate_report(self, examples: Sequence[Example]) -> dict:
        """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion
        matrix (``[true][predicted]`` in the order of ``classes``; a label unseen in training
        is an error that no column holds, counted under ``unseen_labels``)."""
        if not isinstance(examples, list) or not all(isinstance(ex, Example) for ex in examples):
            examples = examples_from(examples, name="examples")
        if not examples:
            raise UserError("no examples to evaluate")
        self._check_labels(examples)
        data, rows = self._read(examples, strict_labels=False)
        predicted = predict_proba(self.model, data, rows=rows).argmax(1).numpy()
        return classification_report(data.labels.numpy(), predicted, self.classes)

    # -- folders ---------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "format": FORMAT,
            "model": self.model.config.to_dict(),
            "classes": list(self.classes),
            "tokens": self.featurizer.token_settings(),
            "embeddings": self.featurizer.describe(),
        }

    def save(self, path: str | os.PathLike, metrics: Metrics | dict | None = None, verbose: bool = False) -> Path:
        """Write the model folder atomically. An existing folder is replaced (at the very end)
        only if this package wrote it (:func:`is_model_folder`); anything else is refused."""
        if metrics is not None:
            self.metrics = metrics if isinstance(metrics, Metrics) else Metrics.from_dict(metrics)
        replacing = check_out_folder(path, "save")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        vocab = "".join(t + "\n" for t in self.featurizer.vocab_tokens())
        with atomic_directory(path) as tmp:
            atomic_write_bytes(tmp / WEIGHTS, save_tensors(tensors, metadata={"format": FORMAT}))
            atomic_write_json(tmp / CONFIG, self.config_dict())
            atomic_write_bytes(tmp / VOCAB, vocab.encode("utf-8"))
            atomic_write_json(tmp / METRICS, rounded(self.metrics.to_dict()))
            atomic_write_text(tmp / CARD, model_card(self.config_dict(), self.metrics))
        if replacing and verbose:
            _log.log(NOTICE, f"replaced the earlier model folder {path}")
        return Path(path)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """:meth:`save` under the name Hugging Face users reach for."""
        return self.save(path)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, impl: str = "auto", allow_download: bool = False, device: str = "auto"
    ) -> TextClassifier:
        """:meth:`load` under the name Hugging Face users reach for."""
        return cls.load(path, impl=impl, allow_download=allow_download, device=device)

    def to(self, device: str | torch.device) -> TextClassifier:
        """Move the model to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); returns self."""
        self.model.to(resolve_device(device))
        return self

    @property
    def device(self) -> torch.device:
        return self.model.classifier.bias.device

    @classmethod
    def load(
        cls, path: str | os.PathLike, impl: str = "auto", allow_download: bool = False, device: str = "auto"
    ) -> TextClassifier:
        """Load a model folder: JSON and safetensors only, validated against the config.
        A transformer encoder named by the folder is read from safetensors only, with no
        remote code, and from local files only unless ``allow_download``. The model goes
        to ``device`` (``auto``: CUDA when available; a saved model holds CPU tensors, so it
        loads anywhere)."""
        target = resolve_device(device)
        # every file is read by the one model-folder reader, and every field is checked
        # before anything is built from it (see validate.py)
        folder = validate.open_model_folder(path)
        path, cfg = folder.path, folder.config
        if not isinstance(cfg.get("embeddings", {}), dict):
            raise UserError(f'{path / CONFIG}: "embeddings" must be a JSON object')
        config = validate.model_config(cfg.get("model"), path / CONFIG)
        classes = validate.classes_list(cfg.get("classes"), path / CONFIG)
        tok = validate.token_settings(cfg.get("tokens"), path / CONFIG) if config.vocab_size else cfg.get("tokens")
        tokens = folder.vocab(config.vocab_size)
        try:
            tensors = load_tensors(folder.weights(validate.expected_shapes(config)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path / WEIGHTS}: cannot read safetensors ({validate.one_line(exc)})") from None
        if len(classes) != config.num_classes:
            raise UserError(f"{path / CONFIG}: {len(classes)} classes but num_classes={config.num_classes}")
        if len(tokens) != config.vocab_size:
            raise UserError(f"{path / VOCAB}: {len(tokens)} tokens, config says vocab_size={config.vocab_size}")
        validate.check_tensors(tensors, config, path / WEIGHTS)  # names, shapes, dtypes, values
        model = RationalClassifier(config, impl=impl)
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
        model.eval()
        featurizer: Featurizer
        if config.vocab_size:  # static vectors: the model's own rows, with its vocabulary
            tok = cast(dict, tok)  # validate.token_settings's
            try:
                vocab = Vocabulary(tokens, bool(tok["lowercase"]), tok["bos"], tok["eos"], tok["unk"])
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"{path / VOCAB} does not fit the token settings of {path / CONFIG} ({exc})") from None
            featurizer = StaticVectors(
                vocab, cfg.get("embeddings", {}).get("source", ""), cast(StaticRows, model.embeddings)
            )
        else:  # a model that reads vectors needs its transformer (loaded on first use)
            encoder = ContextualEncoder.from_config(
                cfg.get("embeddings"), str(path / CONFIG), allow_download=allow_download
            )
            if encoder.dim != config.embedding_dim:
                raise UserError(
                    f"{path / CONFIG}: {encoder.source} gives {encoder.dim}-d vectors, "
                    f"the model reads {config.embedding_dim}-d"
                )
            featurizer = ContextualVectors(encoder)
        try:
            metrics = Metrics.from_dict(folder.metrics())
        except (TypeError, ValueError, RecursionError):  # informational: a damaged one is left out
            metrics = Metrics()
        return cls(model, featurizer, classes, metrics=metrics).to(target)


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


def tune_text_classifier(
    splits: Splits,
    n: int,
    options: RunOptions | None = None,
    verbose: bool = True,
    hf_options: TransformerOptions | None = None,
    search_seed: int = 0,
) -> TextClassifier:
    """A small random search: ``n`` assignments of lr, clip, dropout, input dropout and
    weight decay from the authors' space (the one ``reproduce`` samples), each trained
    with ``options`` otherwise; the model with the best dev accuracy is returned, with every
    assignment and its dev accuracy in ``metrics["tuning"]`` (the test set is never looked at
    to choose)."""
    from .experiments.protocol import sample_assignments

    options = options or RunOptions()
    if n < 1:
        raise ParameterError("tune", f"expected a number of assignments >= 1, got {n}")
    if not isinstance(splits, Splits):
        splits = splits_from(splits)
    if not splits.dev:
        raise ParameterError("tune", "needs a dev set to choose by")
    seed_text = f"tune:{search_seed}:{options.embeddings}:{options.model.patterns}"
    trials, best = [], None
    for k, hp in enumerate(sample_assignments(n, options.embeddings, seed_text), 1):
        trial = RunOptions(
            options.embeddings,
            replace(options.model, dropout=hp["dropout"], input_dropout=hp["input_dropout"]),
            replace(options.train, lr=hp["lr"], clip=hp["clip"], weight_decay=hp["weight_decay"]),
            options.structure,
        )
        try:
            clf = train_text_classifier(splits, options=trial, verbose=False, hf_options=hf_options)
            dev = clf.metrics["dev_accuracy"]
            trials.append({"assignment": k, **hp, "dev_accuracy": dev, "transitions": clf.metrics["transitions"]})
        except UserError as exc:  # an assignment whose structure learning fails is skipped
            trials.append({"assignment": k, **hp, "dev_accuracy": None, "error": str(exc)})
            clf, dev = None, None
        if verbose:
            got = f"dev accuracy {dev:.4f}" if dev is not None else f"failed ({trials[-1]['error'][:80]})"
            _log.info(
                f"tune {k}/{n}: lr {hp['lr']:.3g} clip {hp['clip']:.3g} dropout {hp['dropout']:.3g} "
                f"input dropout {hp['input_dropout']:.3g} weight decay {hp['weight_decay']:.2g}: {got}",
            )
        if clf is not None and (best is None or dev > best.metrics["dev_accuracy"]):
            best = clf
    if best is None:
        raise ParameterError("tune", f"all {n} assignments failed (first: {trials[0].get('error')})")
    best.metrics["tuning"] = trials
    return best

"""A trained text classifier and its folder: :class:`TextClassifier` (read texts, predict,
evaluate, save, load) and the model-folder helpers. Training lives in :mod:`.pipeline`.

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
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from . import validate
from .card import CARD_MARKER, model_card
from .config import TrainConfig, default
from .data import Example, examples_from, texts_from
from .device import resolve_device
from .embeddings.featurizer import (
    CHARS_PER_TOKEN,  # noqa: F401  (re-exported: where texts are cut)
    ContextualVectors,
    Featurizer,
    StaticVectors,
)
from .embeddings.rows import RowTable, StaticRows
from .embeddings.transformer import ContextualEncoder
from .errors import UserError
from .fileio import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, is_inside_cwd
from .folded import FoldedClassifier
from .log import NOTICE, get_logger
from .metrics import Metrics, check_labels, classification_report, rounded
from .model import RationalClassifier
from .ops import forced_impl
from .train import EncodedData, accuracy, predict_proba
from .vocab import Vocabulary

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
    if os.path.islink(path):  # a link still: one that loops, which saving could not replace
        raise UserError(f"{option} {link}: a symbolic link that loops; give a folder")
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
        data, rows = self._labelled(examples)
        return accuracy(self.model, data, rows)

    def _labelled(self, examples: Sequence[Example]) -> tuple[EncodedData, Any]:
        """Labelled examples in any accepted form, their labels checked (:meth:`_check_labels`),
        read as the model reads them."""
        if not isinstance(examples, list) or not all(isinstance(ex, Example) for ex in examples):
            examples = examples_from(examples, name="examples")
        if not examples:
            raise UserError("no examples to evaluate")
        self._check_labels(examples)
        return self._read(examples, strict_labels=False)

    def _check_labels(self, examples: Sequence[Example]) -> None:
        """Labels the model does not know count as errors (:func:`~sparse_rational.metrics.check_labels`)."""
        check_labels(self.classes, examples)

    def evaluate_report(self, examples: Sequence[Example]) -> dict:
        """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion
        matrix (``[true][predicted]`` in the order of ``classes``; a label unseen in training
        is an error that no column holds, counted under ``unseen_labels``)."""
        data, rows = self._labelled(examples)
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

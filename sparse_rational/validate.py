"""Validating untrusted model files before anything is built from them, and a training
run's options and data before anything is trained (:func:`check_run`,
:func:`check_training_data`).

A model folder may come from anyone: every field of ``config.json`` is checked for type
and range, the tensors' names, shapes and dtypes are compared with what the config
implies *before* a real model is allocated (the expected shapes come from a model built on
PyTorch's ``meta`` device, which allocates nothing), and every problem is a one-line
:class:`~sparse_rational.errors.UserError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError, UserError, one_line

if TYPE_CHECKING:  # torch is imported where tensors are checked: the rest serves folded.py too
    import torch

    from .config import RunOptions
    from .data import Splits

READOUTS = ("final", "mean", "max")  # model.READOUTS (checked equal in the tests), without torch

# generous bounds: far above any real model, low enough that nothing huge is allocated
MAX_WFSAS = 100_000
MAX_TRANSITIONS = 100_000
MAX_EMBEDDING_DIM = 1 << 16
MAX_CLASSES = 100_000
FORMAT = "sparse-rational/1"  # pipeline.FORMAT (the marker of a model folder's config.json)


MAX_JSON_BYTES = 16 << 20  # config.json, metrics.json, path.json: kilobytes in any real folder
MAX_WEIGHT_HEADER = 1 << 20  # a safetensors header: names, dtypes, shapes, offsets
CONFIG, WEIGHTS, VOCAB, METRICS = "config.json", "model.safetensors", "vocab.txt", "metrics.json"


def read_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of one untrusted file: opened only if it is a regular file (a FIFO, a
    device such as /dev/zero, a folder are refused in one line, without blocking) of at
    most ``limit`` bytes. Every file of a model folder is read through this."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({one_line(exc.strerror or exc)})") from None
    try:
        fh = os.fdopen(fd, "rb")
    except OSError:  # a folder opens, but Python's file object refuses it (naming only the descriptor)
        os.close(fd)
        raise UserError(f"{path}: not a regular file (a FIFO, a device or a folder is never read)") from None
    with fh:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"{path}: not a regular file (a FIFO, a device or a folder is never read)")
            if st.st_size > limit:
                raise UserError(f"{path}: {st.st_size} bytes, too large (such a file holds at most {limit})")
            data = fh.read(st.st_size + 1)  # (read(n) allocates n bytes: never the cap itself)
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({one_line(exc.strerror or exc)})") from None
    if len(data) > st.st_size:  # it grew while being read
        raise UserError(f"{path}: changed while it was read")
    return data


def parse_json(data: bytes | str, path: str | os.PathLike, what: str = "JSON"):
    """Parse JSON; any failure (bytes, syntax, a number of thousands of digits, nesting
    too deep) is a one-line UserError naming ``path``."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise UserError(f"{path}:{line}: not UTF-8 text") from None
    else:
        text = data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid {what} ({one_line(exc.msg)})") from None
    except ValueError:  # int() of thousands of digits
        raise UserError(f"{path}: not valid {what} (a number too long to read)") from None
    except RecursionError:
        raise UserError(f"{path}: not valid {what} (nested too deeply)") from None


def read_json(path: str | os.PathLike, what: str = "JSON", limit: int = MAX_JSON_BYTES):
    """Parse a JSON file read with :func:`read_file`; any failure is a one-line UserError."""
    return parse_json(read_file(path, limit), path, what)


class ModelFolder:
    """The files of one model folder, each read through :func:`read_file` (regular files
    under a size cap) and parsed with every failure a one-line UserError naming the file.
    Made by :func:`open_model_folder`, which every command's loader uses: the PyTorch model
    (``TextClassifier.load``), the folded predictor (``load_folded``), and the checks that
    only peek at a folder (:func:`peek_config`)."""

    def __init__(self, path: Path, config: dict):
        self.path, self.config = path, config

    def vocab(self, expected: int | None) -> list[str]:
        """The tokens of ``vocab.txt`` (see :func:`vocab_tokens`)."""
        return vocab_tokens(self.path / VOCAB, expected)

    def weights(self, shapes: dict[str, tuple[int, ...]]) -> bytes:
        """The bytes of ``model.safetensors``, at most what tensors of ``shapes`` take in
        float64 plus a header."""
        elements = sum(math.prod(shape) for shape in shapes.values())
        return read_file(self.path / WEIGHTS, 8 * elements + MAX_WEIGHT_HEADER)

    def metrics(self) -> dict:
        """``metrics.json``, informational: missing, unreadable or damaged gives ``{}``."""
        if not os.path.lexists(self.path / METRICS):
            return {}
        try:
            return finite_metrics(read_json(self.path / METRICS))
        except (UserError, RecursionError):
            return {}


def open_model_folder(path: str | os.PathLike) -> ModelFolder:
    """The one reader of model folders: ``path`` must be a folder holding ``config.json``,
    ``model.safetensors`` and ``vocab.txt``; ``config.json`` is read (a regular file of at
    most :data:`MAX_JSON_BYTES`), parsed and its format marker checked."""

    path = Path(path)
    if not path.is_dir():
        raise ParameterError("model", f"{path}: not a model folder")
    for name in (CONFIG, WEIGHTS, VOCAB):
        if not os.path.lexists(path / name):
            raise UserError(f"{path / name}: missing (a model folder holds {CONFIG}, {WEIGHTS}, {VOCAB})")
    cfg = read_json(path / CONFIG)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise UserError(f"{path / CONFIG}: not a {FORMAT} model config")
    return ModelFolder(path, cfg)


def peek_json(path: str | os.PathLike) -> dict | None:
    """A JSON object read as :func:`read_json` reads it, or None when it cannot be read."""
    try:
        obj = read_json(path)
    except UserError:
        return None
    return obj if isinstance(obj, dict) else None


def peek_config(path: str | os.PathLike) -> dict | None:
    """A folder's ``config.json`` for a cheap look (which loader, which encoder), read as
    :func:`open_model_folder` reads it; None when it cannot be read (the loader then says
    why in one line)."""
    return peek_json(Path(path) / CONFIG)


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {one_line(repr(value))[:40]}")
    return value


def _prob(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1):
        raise ValueError(f"{name} must be a number in [0, 1), got {one_line(repr(value))[:40]}")
    return float(value)


def model_config(raw, path: str | os.PathLike):
    """A :class:`~sparse_rational.model.ModelConfig` from the ``"model"`` object of a
    config file, every field checked (unknown fields are an error)."""
    from .model import ModelConfig  # lazy: start-up (torch)

    fields = model_fields(raw, path)
    try:
        return ModelConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: {one_line(f'bad model config ({exc})')}") from None


MODEL_FIELDS = (
    "structure",
    "embedding_dim",
    "num_classes",
    "vocab_size",
    "dropout",
    "input_dropout",
    "readout",
    "layers",  # stacked or bidirectional models (checked by ModelConfig.from_dict)
    "bidirectional",
    "stack",
)


def model_fields(raw, path: str | os.PathLike) -> dict:
    """The ``"model"`` object of a config file with every field checked (as
    :func:`model_config`, without building a model: no PyTorch)."""

    def bad(what: str) -> UserError:
        return UserError(f"{path}: {one_line(what)}")

    if not isinstance(raw, dict):
        raise bad('"model" must be a JSON object')
    try:
        structure = raw["structure"]
        if not isinstance(structure, list) or len(structure) > MAX_WFSAS:
            raise ValueError(f"structure must be a list of at most {MAX_WFSAS} lengths")
        for n in structure:
            _int(n, "every WFSA length", 1, MAX_TRANSITIONS)
        if sum(structure) > MAX_TRANSITIONS:
            raise ValueError(f"structure has {sum(structure)} transitions, at most {MAX_TRANSITIONS}")
        _int(raw["embedding_dim"], "embedding_dim", 1, MAX_EMBEDDING_DIM)
        _int(raw["num_classes"], "num_classes", 1, MAX_CLASSES)
        _int(raw.get("vocab_size", 0), "vocab_size", 0, 1 << 31)
        _prob(raw.get("dropout", 0.0), "dropout")
        _prob(raw.get("input_dropout", 0.0), "input_dropout")
        if raw.get("readout", "final") not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}")
        unknown = sorted(set(raw) - set(MODEL_FIELDS))
        if unknown:
            raise TypeError(f"unexpected field {one_line(repr(unknown[0]))[:40]}")
        return dict(raw)
    except KeyError as exc:
        raise bad(f'"model" has no field {exc}') from None
    except (TypeError, ValueError) as exc:
        raise bad(f"bad model config ({exc})") from None


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state dict of a model of ``config`` (allocates nothing)."""
    import torch  # lazy: start-up (torch)

    from .model import RationalClassifier  # lazy: start-up (torch)

    with torch.device("meta"):
        model = RationalClassifier(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_tensors(tensors: dict[str, torch.Tensor], config, path: str | os.PathLike) -> None:
    """The tensors of a weights file against ``config``: same names, shapes, floating
    dtypes, finite values."""
    import torch  # lazy: start-up (torch)

    expected = expected_shapes(config)
    for name in sorted(expected):
        if name not in tensors:
            raise UserError(f"{path}: tensor {name} is missing (the config needs {list(expected[name])})")
    for name in sorted(tensors):
        t = tensors[name]
        if name not in expected:
            raise UserError(f"{path}: unexpected tensor {one_line(name)[:60]!r} (not part of this model)")
        if tuple(t.shape) != expected[name]:
            raise UserError(f"{path}: tensor {name} has shape {list(t.shape)}, the config needs {list(expected[name])}")
        if not t.is_floating_point():
            raise UserError(f"{path}: tensor {name} has dtype {t.dtype}, expected floating point")
        if not torch.isfinite(t.float()).all():
            raise UserError(f"{path}: tensor {name} holds NaN or infinite values")


def static_shapes(fields: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a model on static vectors (``vocab_size > 0``)
    with the checked ``fields`` of :func:`model_fields` (what :func:`expected_shapes` gives)."""
    structure, e, c = fields["structure"], fields["embedding_dim"], fields["num_classes"]
    n = sum(structure)
    return {
        "embeddings": (fields["vocab_size"], e),
        "wfsa.w": (e, n),
        "wfsa.v": (e, n),
        "wfsa.b": (n,),
        "classifier.weight": (c, len(structure) if structure else 0),
        "classifier.bias": (c,),
    }


def check_arrays(arrays: dict[str, Any], fields: dict, path: str | os.PathLike) -> None:
    """:func:`check_tensors` for numpy arrays (a weights file read without PyTorch)."""
    expected = static_shapes(fields)
    for name in sorted(expected):
        if name not in arrays:
            raise UserError(f"{path}: tensor {name} is missing (the config needs {list(expected[name])})")
    for name in sorted(arrays):
        a: np.ndarray = arrays[name]
        if name not in expected:
            raise UserError(f"{path}: unexpected tensor {one_line(name)[:60]!r} (not part of this model)")
        if tuple(a.shape) != expected[name]:
            raise UserError(f"{path}: tensor {name} has shape {list(a.shape)}, the config needs {list(expected[name])}")
        if not np.issubdtype(a.dtype, np.floating):
            raise UserError(f"{path}: tensor {name} has dtype {a.dtype}, expected floating point")
        if not np.isfinite(a.astype(np.float32)).all():
            raise UserError(f"{path}: tensor {name} holds NaN or infinite values")


def classes_list(raw, path) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise UserError(f'{path}: "classes" must be a list of strings')
    if len(set(raw)) != len(raw):
        raise UserError(f'{path}: "classes" holds a class twice')
    return list(raw)


def token_settings(raw, path) -> dict:
    if not isinstance(raw, dict):
        raise UserError(f'{path}: "tokens" must be a JSON object')
    ok = (
        isinstance(raw.get("lowercase"), bool)
        and isinstance(raw.get("unk"), str)
        and all(raw.get(k) is None or isinstance(raw.get(k), str) for k in ("bos", "eos"))
    )
    if not ok:
        raise UserError(f'{path}: "tokens" needs lowercase (true/false), unk (a string), bos and eos (strings or null)')
    return raw


MAX_TOKEN_BYTES = 4096  # a vocab.txt larger than expected x this is refused unread


def vocab_tokens(path, expected: int | None = None) -> list[str]:
    """The lines of ``vocab.txt`` (UTF-8, one token per line, no duplicates); with
    ``expected``, a file of another number of lines is refused before it is decoded."""
    path = Path(path)
    limit = (expected + 1) * MAX_TOKEN_BYTES if expected is not None else MAX_JSON_BYTES * 64
    data = read_file(path, limit)
    lines = data.count(b"\n")
    if expected is not None and lines != expected:
        raise UserError(f"{path}: {lines} lines, the config says vocab_size={expected}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text") from None
    if text and not text.endswith("\n"):
        raise UserError(f"{path}: truncated (the last line has no newline)")
    if "\r" in text:
        line = text[: text.index("\r")].count("\n") + 1
        raise UserError(f"{path}:{line}: a carriage return (Windows line ends?); one token per line ending in \\n")
    tokens = text.split("\n")[:-1]
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens, 1):
        if tok in seen:
            raise UserError(f"{path}:{i}: token {one_line(tok)[:40]!r} already on line {seen[tok]}")
        seen[tok] = i
    return tokens


def finite_metrics(raw) -> dict:
    """``metrics.json`` is informational: anything but a JSON object is dropped, and every
    NaN or infinite number in it (Python's JSON reader accepts them) becomes null."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(raw) if isinstance(raw, dict) else {}


__all__ = [
    "check_arrays",
    "check_tensors",
    "model_fields",
    "static_shapes",
    "classes_list",
    "expected_shapes",
    "model_config",
    "ModelFolder",
    "open_model_folder",
    "parse_json",
    "peek_config",
    "peek_json",
    "read_file",
    "one_line",
    "read_json",
    "token_settings",
    "vocab_tokens",
    "finite_metrics",
]


# -- a training run -----------------------------------------------------------------------------


def check_run(options: RunOptions) -> tuple[RunOptions, tuple[tuple[int, ...], ...]]:
    """The checks of a training run's options, before any data is read: each field as the
    command line checks it, then how the options combine (a teacher, tuned vectors, a
    target size and the structure it must fit in). Returns the options as the run uses them
    (``--vectors finetune`` on transformer vectors, the default, is ``frozen``: they stay
    frozen) and the structure per layer. Every problem is a
    :class:`~sparse_rational.errors.ParameterError` naming its parameter."""
    from .config import check  # lazy: start-up (predict reads model folders, not run options)
    from .embeddings.hf_options import is_contextual  # lazy: start-up (as above)
    from .structure import check_size, format_structure, parse_stack, repeat_layers  # lazy: start-up (torch)

    mopts, opts, teach = options.model, options.structure, options.teach
    for part in (mopts, options.train, opts, teach):  # the command line's checks, for the API and the estimator
        check(part)
    if (teach.transfer or teach.augment) and not teach.teacher:
        raise ParameterError("teacher", "transfer texts and augmented copies need a teacher to label them")
    if not 0 <= teach.teacher_weight <= 1:  # [0, 1]: the other kinds' checks are check()'s
        raise ParameterError("teacher_weight", f"must be in [0, 1], got {teach.teacher_weight}")
    contextual = is_contextual(options.embeddings)
    if mopts.vectors == "finetune" and contextual:  # the default: transformer vectors stay frozen
        mopts = dataclasses.replace(mopts, vectors="frozen")
        options = dataclasses.replace(options, model=mopts)
    if mopts.vectors == "tuned" and contextual:
        raise ParameterError(
            "vectors", f"{mopts.vectors!r} needs static word vectors; {options.embeddings} are a transformer's"
        )
    if teach.teacher and contextual:
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
    return options, stack


def check_training_data(splits: Splits) -> list:
    """The classes of the training split (sorted), once the splits are known to be usable:
    a training set with at least two classes, every text and label encodable as UTF-8 (a
    text that could not be saved fails now, not after training)."""
    if not splits.train:
        raise UserError("the training set is empty")
    for name in ("train", "dev", "test"):
        for k, ex in enumerate(getattr(splits, name)):
            try:
                ex.text.encode("utf-8"), str(ex.label).encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"{name} example {k + 1}: not valid Unicode text (a lone surrogate)") from None
    classes = sorted({ex.label for ex in splits.train})
    if len(classes) < 2:
        raise UserError(f"the training data has only one class ({classes[0]!r}); a classifier needs at least two")
    return classes


def resolve_negation_pairs(options: RunOptions, classes: list, texts: int) -> RunOptions:
    """``options`` with ``negation_pairs`` as the run uses it: ``"auto"`` gives
    :data:`~sparse_rational.config.AUTO_NEGATION_PAIRS` when the two classes are named
    positive/negative or pos/neg (any case) and there are ``AUTO_NEGATION_MIN_TEXTS``
    training ``texts`` or more, else 0; a number asks for two classes, since a negated
    sentence takes the other one."""
    from .config import AUTO_NEGATION_MIN_TEXTS, AUTO_NEGATION_PAIRS  # lazy: start-up (predict)
    from .data.contrast import NAMED_SENTIMENT  # lazy: start-up (predict)

    pairs = options.train.negation_pairs
    if pairs == "auto":
        names = {str(c).strip().lower() for c in classes}
        sentiment = any(names == set(pair) for pair in NAMED_SENTIMENT)
        pairs = AUTO_NEGATION_PAIRS if sentiment and texts >= AUTO_NEGATION_MIN_TEXTS else 0.0
    elif pairs and len(classes) != 2:
        raise ParameterError(
            "negation_pairs", f"a negated sentence takes the other class: needs 2 classes, not {len(classes)}"
        )
    return dataclasses.replace(options, train=dataclasses.replace(options.train, negation_pairs=float(pairs)))

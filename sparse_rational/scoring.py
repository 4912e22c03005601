"""Scoring many files on many machines with Ray Data (``score_files``), one model load per
worker (:class:`Scorer`, a ``map_batches`` class).

Input: text files (one document per line, like ``predict``), JSON-lines files or Parquet
files with a text column. Output: a folder of JSON-lines (or Parquet) files, one row per
input row, in input order, with the input's columns, ``label`` and ``p_<class>`` for every
class. Each worker loads the model once, on the PyTorch-free folded path when the model is
on static word vectors (as ``predict`` does), else as a PyTorch model on the CPU.

    from sparse_rational.scoring import score_files
    score_files("MODEL_DIR", ["reviews/*.txt"], "scored/", address="HEAD:6379", workers=16)

Without an address a local Ray instance of ``workers`` CPUs is started (and shut down).
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .argtypes import MAX_WORKERS
from .config import TrainConfig, default
from .errors import ParameterError, UserError
from .folded import is_static_model, load_folded
from .raycluster import connect, import_ray

DEFAULT_MAX_TOKENS = default(TrainConfig, "max_tokens")  # texts are cut as predict cuts them
FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
OUTPUTS = ("jsonl", "parquet")


class Scorer:
    """Scores batches of texts (``batch[text_column]``): ``map_batches(Scorer, ...)`` makes
    one per worker, so the model is loaded once per worker."""

    def __init__(self, model_dir: str, text_column: str = "text", max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.text_column, self.max_tokens = text_column, max_tokens
        if os.environ.get("SPARSE_RATIONAL_IMPL", "").strip() in ("", "auto") and is_static_model(model_dir):
            folded = load_folded(model_dir)
            if folded is None:
                raise UserError(f"{model_dir}: not a model folder")
            self.classes, self._proba = list(folded.classes), folded.predict_proba
        else:  # transformer vectors: the PyTorch model
            from .pipeline import TextClassifier  # lazy: start-up (torch)

            clf = TextClassifier.load(model_dir, device="cpu")
            self.classes, self._proba = list(clf.classes), clf.predict_proba

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = ["" if t is None else str(t) for t in batch[self.text_column]]
        probs = np.asarray(self._proba(texts, self.max_tokens), np.float64).reshape(len(texts), len(self.classes))
        out = dict(batch)
        out["label"] = np.array([self.classes[i] for i in probs.argmax(1)], dtype=object)
        for k, c in enumerate(self.classes):
            out[f"p_{c}"] = probs[:, k]
        return out


def input_files(patterns: Sequence[str]) -> tuple[list[str], str]:
    """The files that ``patterns`` name (globs, files, or folders of files) and their one format
    (``text``, ``json`` or ``parquet``); a pattern that names nothing, an unknown suffix or a
    mix of formats is a :class:`ParameterError` of ``inputs``."""
    files: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not found:
            raise ParameterError("inputs", f"{pattern}: no such file")
        for f in found:
            if not Path(f).is_file():
                raise ParameterError("inputs", f"{f}: {'not a file' if Path(f).exists() else 'no such file'}")
        files += found
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds:
        bad = next(f for f in files if Path(f).suffix.lower() not in FORMATS)
        raise ParameterError("inputs", f"{bad}: expected one of {', '.join(FORMATS)}")
    if len(kinds) != 1:
        raise ParameterError("inputs", "mixes formats; score text, JSON-lines and Parquet files apart")
    return files, kinds.pop()  # type: ignore[return-value]


def score_files(
    model_dir: str | os.PathLike,
    inputs: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int = 2,
    text_column: str = "text",
    output: str = "jsonl",
    batch_size: int = 4096,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> int:
    """Score ``inputs`` with the model folder ``model_dir`` on a Ray cluster (``address``;
    None: a local instance of ``workers`` CPUs) into ``out_dir``; returns the rows scored."""
    if not Path(model_dir).is_dir():
        raise ParameterError("model_dir", f"{model_dir}: not a model folder")
    if not 1 <= workers <= MAX_WORKERS:
        raise ParameterError("workers", f"{workers}: expected 1 to {MAX_WORKERS}")
    if output not in OUTPUTS:
        raise ParameterError("output", f"{output!r}: expected one of {', '.join(OUTPUTS)}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ParameterError("out_dir", f"{out}: exists and is not an empty folder")
    files, kind = input_files(inputs)
    model = str(Path(model_dir).resolve())
    Scorer(model, text_column, max_tokens)  # a bad model folder fails here, in one line, before Ray starts
    ray = import_ray("scoring with Ray")
    # a local instance gets a CPU beyond the scorers' for the reads: actors holding every CPU starve them
    try:
        started = connect(address, workers + 1, what="{address}")
    except UserError as exc:  # the address named as the caller spells it (the CLI: --ray-address)
        if not str(exc).startswith("{address}"):
            raise
        raise ParameterError("address", str(exc)) from None
    importlib.import_module("ray.data")  # its import configures its logger: first, then quieted here
    # not Ray Data's progress lines, nor its warning that the progress bars are off
    quiet = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name, quieter in quiet.items():
        logging.getLogger(name).setLevel(quieter)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows out in input order
        ctx.enable_progress_bars = False
        _import_fsspec_http()
        ray_files = [str(Path(f).resolve()) for f in files]
        if kind == "text":  # lines split as predict splits them (at "\n" only), not read_text's splitlines
            ds = ray.data.read_binary_files(ray_files, include_paths=True).flat_map(_lines)
        elif kind == "json":
            ds = ray.data.read_json(ray_files, lines=True)
        else:
            ds = ray.data.read_parquet(ray_files)
        if text_column not in ds.schema().names:
            raise ParameterError("text_column", f"{text_column!r} is not a column of the input")
        scored = ds.map_batches(
            Scorer,
            fn_constructor_kwargs={"model_dir": model, "text_column": text_column, "max_tokens": max_tokens},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        target = str(out.resolve())
        if output == "parquet":
            scored.write_parquet(target)
        else:
            scored.write_json(target, lines=True, force_ascii=False)
        return int(sum(1 for _ in _rows_written(out, output)))
    except Exception as exc:
        own = _own_error(exc)  # ours, raised here or in a worker (Ray wraps it): its one line, no traceback
        if own is None:
            raise
        raise own from None
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if started:
            ray.shutdown()


_WORKER_ERROR = re.compile(r"^sparse_rational\.errors\.(\w*Error): (.+)$", re.M)


def _import_fsspec_http() -> None:
    """Import fsspec's HTTP filesystem once, here, before Ray Data lists the inputs: its file
    listing imports it from several threads at once, and one of them can see the module half
    initialised ("cannot import name 'HTTPFileSystem'", seen in clean-clone test runs). Where it
    cannot be imported (no aiohttp), it is marked missing, so that every thread gets the
    ModuleNotFoundError Ray Data expects instead of importing it again, each on its own."""
    try:
        import fsspec.implementations.http  # noqa: F401  # lazy: optional (fsspec: Ray Data falls back without it)
    except ImportError:
        sys.modules["fsspec.implementations.http"] = None  # type: ignore[assignment]  # import raises ModuleNotFoundError


def _own_error(exc: BaseException) -> UserError | None:
    """This package's error in ``exc``, in what it wraps, or (raised in a Ray worker, which
    carries only its text across) in the text of Ray's error."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, UserError) and type(seen).__module__ == UserError.__module__:
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__ or seen.__context__
    found = _WORKER_ERROR.findall(str(exc))
    return UserError(found[-1][1]) if found else None


def _lines(row: dict[str, Any]) -> list[dict[str, str]]:
    """The lines of one text file as ``predict`` reads them: split at ``\n``, each decoded as
    UTF-8 (a line that is not: one line naming the file and the line)."""
    data, path = row["bytes"], row["path"]
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the newline that ends the last line
    out = []
    for number, raw in enumerate(pieces, 1):
        try:
            out.append({"text": raw.decode("utf-8")})
        except UnicodeDecodeError:
            raise UserError(f"{path}:{number}: not UTF-8 text") from None
    return out


def _rows_written(out: Path, output: str) -> Any:
    for f in sorted(out.iterdir()):
        if output == "parquet" and f.suffix == ".parquet":
            import pyarrow.parquet as pq  # lazy: optional (pyarrow: an extra of Ray Data, present where Ray is)

            yield from range(pq.read_metadata(f).num_rows)
        elif output == "jsonl" and f.suffix == ".json":
            with open(f, encoding="utf-8") as fh:
                yield from (1 for line in fh if line.strip())

"""``sparse-rational demo`` and ``sparse-rational serve``: parsers and the thin commands.

Wired into :mod:`sparse_rational.cli` with ``add_parsers(sub)`` and ``"demo": run_demo``,
``"serve": run_serve`` in ``COMMANDS``. Importing this module imports no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

from .. import config
from ..argtypes import MAX_WORKERS, int_between, nonneg_int, positive_int, seed, threads_int
from ..commandline import check_output, check_output_file
from ..errors import UserError
from ..validate import peek_config
from .options import ServeOptions
from .tables import TableSource, table_for

DEFAULT_MAX_TOKENS = config.default(ServeOptions, "max_tokens")  # as predict (config.TrainConfig.max_tokens)
DEFAULT_MAX_BODY = config.default(ServeOptions, "max_body_bytes")
DEFAULT_MAX_TEXTS = config.default(ServeOptions, "max_texts")
DEFAULT_MAX_EXPLAIN_TOKENS = config.default(ServeOptions, "max_explain_tokens")
DEFAULT_MAX_EXPLAIN_QUEUE = config.default(ServeOptions, "max_explain_queue")
DEFAULT_MAX_BATCH = config.default(ServeOptions, "max_batch")
DEFAULT_THREADS = config.default(ServeOptions, "threads")
DEFAULT_INLINE_CHARS = config.default(ServeOptions, "inline_chars")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _table_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Table 1 (top phrases per WFSA over the training documents)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--dataset", help="amazon:{kitchen,books,dvd,electronics} or fdu:<domain>: its training split")
    x.add_argument("--train", help="training file (.tsv, .jsonl or .csv)")
    x.add_argument("--no-table", action="store_true", help="leave Table 1 out")
    g.add_argument("--data-dir", help="data root (default: $SPARSE_RATIONAL_DATA, else a cache folder)")
    g.add_argument("--split-seed", type=seed, default=0, help="seed of the train/dev/test split (default 0)")
    g.add_argument("--top-k", type=positive_int, default=4, help="phrases per pattern and direction (default 4)")


def add_parsers(subparsers) -> None:
    """Register ``demo`` and ``serve`` on ``subparsers`` (from ``add_subparsers``)."""
    d = subparsers.add_parser(
        "demo",
        help="write one self-contained HTML page that runs the model in the browser",
        description="One HTML file with the model embedded: type a text, see the label, the probabilities, "
        "each WFSA's best path and its contribution to each class. No network request; static word vectors "
        "only (serve a transformer model with `sparse-rational serve`). Table 1 needs --dataset or --train: "
        "the model folder is never followed to training data.",
    )
    d.add_argument("--model", required=True, help="model folder")
    d.add_argument("--out", required=True, help="HTML file to write")
    d.add_argument("--title", help="page title (default: the model folder)")
    d.add_argument(
        "--max-tokens",
        type=nonneg_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"cut longer texts as predict does (0: never; default {DEFAULT_MAX_TOKENS})",
    )
    _table_args(d)

    s = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: POST /predict, POST /explain, GET / (the page), GET /health",
        description="An HTTP server (starlette + uvicorn: pip install 'sparse-rational[serve]'). Concurrent "
        "requests are batched into one model call. Table 1 on the page needs --dataset or --train.",
    )
    s.add_argument("--model", required=True, help="model folder")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    s.add_argument(
        "--workers",
        type=int_between(1, MAX_WORKERS),
        default=1,
        help=f"server processes (1-{MAX_WORKERS}, default 1)",
    )
    s.add_argument(
        "--allow-download",
        action="store_true",
        help="let a model that reads transformer vectors download its encoder (default: local files only)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=DEFAULT_MAX_BODY,
        help=f"largest request body; larger ones get 413 (default {DEFAULT_MAX_BODY})",
    )
    s.add_argument(
        "--max-texts",
        type=positive_int,
        default=DEFAULT_MAX_TEXTS,
        help=f"most texts in one /predict request; more get 422 (default {DEFAULT_MAX_TEXTS})",
    )
    s.add_argument(
        "--max-tokens",
        type=nonneg_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"cut longer texts as predict does (0: never; default {DEFAULT_MAX_TOKENS})",
    )
    s.add_argument(
        "--max-explain-tokens",
        type=nonneg_int,
        default=DEFAULT_MAX_EXPLAIN_TOKENS,
        help=f"POST /explain explains the first this many tokens (0: all; default {DEFAULT_MAX_EXPLAIN_TOKENS})",
    )
    s.add_argument(
        "--max-explain-queue",
        type=positive_int,
        default=DEFAULT_MAX_EXPLAIN_QUEUE,
        help="most POST /explain requests waiting or running; more get 503 with Retry-After "
        f"(default {DEFAULT_MAX_EXPLAIN_QUEUE}); the queued work of a client that disconnects is dropped",
    )
    s.add_argument(
        "--max-batch",
        type=positive_int,
        default=DEFAULT_MAX_BATCH,
        help=f"most texts of concurrent requests scored in one model call (default {DEFAULT_MAX_BATCH})",
    )
    s.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="wait this long for more requests before a model call (default 0: requests that arrive "
        "while the model is busy are batched anyway)",
    )
    s.add_argument(
        "--inline-chars",
        type=nonneg_int,
        default=DEFAULT_INLINE_CHARS,
        help="score a model call of at most this many characters on the event loop, a larger one on the "
        f"model thread (default {DEFAULT_INLINE_CHARS}: about a millisecond; 0: every call on the thread); "
        "static word vectors only: a transformer model scores on the thread",
    )
    s.add_argument(
        "--threads",
        type=threads_int,
        default=DEFAULT_THREADS,
        help=f"torch threads per server process (default {DEFAULT_THREADS}: requests are small; scale with --workers)",
    )
    s.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    s.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser (default auto: httptools when installed, the serve extra's, else h11)",
    )
    s.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop (default auto: uvloop when installed, the serve extra's, else asyncio)",
    )
    _table_args(s)


def refuse_transformer(model: str, what: str) -> None:
    """A one-line refusal before loading anything, when ``model``'s config names transformer
    vectors (its vocabulary is empty)."""
    cfg = peek_config(model)  # read as every model-folder reader reads it
    try:
        size = cfg["model"]["vocab_size"] if cfg is not None else None
        source = (cfg.get("embeddings") or {}).get("source", "transformer") if cfg is not None else ""
    except (KeyError, TypeError, AttributeError):
        return  # TextClassifier.load says what is wrong
    if size == 0:
        raise UserError(
            f"{what}: {model} reads {source} transformer vectors, which a page cannot compute offline; "
            f"serve it instead: sparse-rational serve --model {model}"
        )


def table_source(args: argparse.Namespace) -> TableSource:
    """Table 1's options (``_table_args``) from the parsed command line."""
    return TableSource(
        dataset=args.dataset,
        train=args.train,
        data_dir=args.data_dir,
        split_seed=args.split_seed,
        top_k=args.top_k,
        no_table=args.no_table,
    )


def run_demo(args: argparse.Namespace, out=None) -> int:
    from ..fileio import atomic_write_text  # lazy: start-up (tempfile)
    from ..pipeline import TextClassifier  # lazy: start-up (torch)
    from .demo import render_page, say  # lazy: start-up (torch)

    out = out or sys.stdout
    check_output(args.out, "--out", inputs={"--train": args.train}, model_dir=args.model)
    check_output_file(args.out, "--out")
    refuse_transformer(args.model, "demo")
    clf = TextClassifier.load(args.model)
    patterns, note = table_for(table_source(args), clf)
    if patterns is None and not args.no_table:
        say("note: Table 1 is left out of the page: give --dataset or --train to include it")
    cfg = clf.model.config
    html = render_page(
        clf,
        "embedded",
        patterns,
        note,
        title=args.title or f"sparse-rational: {Path(args.model).name}",
        subtitle=f"{len(cfg.structure)} WFSAs, {cfg.transitions} transitions, classes {', '.join(clf.classes)}; "
        "the model runs in this page, offline.",
        max_tokens=args.max_tokens,
    )
    atomic_write_text(args.out, html)
    print(f"wrote {args.out} ({len(html.encode('utf-8')) / 1e6:.2f} MB)", file=out)  # (nothing if stdout is closed)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.batch_wait_ms <= 1000:  # also NaN
        raise UserError(f"--batch-wait-ms: must be between 0 and 1000, got {args.batch_wait_ms}")
    if args.train and not os.path.exists(args.train):  # read on the page's first request: a typo is said now
        raise UserError(f"--train {args.train}: no such file")
    options = ServeOptions(
        model=args.model,
        allow_download=args.allow_download,
        max_body_bytes=args.max_body_bytes,
        max_texts=args.max_texts,
        max_tokens=args.max_tokens,
        max_explain_tokens=args.max_explain_tokens,
        max_explain_queue=args.max_explain_queue,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        inline_chars=args.inline_chars,
        threads=args.threads,
        **asdict(table_source(args)),
    )
    from . import server  # lazy: start-up (asyncio, the server)

    return server.serve(
        options,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        http=args.http,
        loop=args.loop,
    )

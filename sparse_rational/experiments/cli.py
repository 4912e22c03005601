"""``sparse-rational reproduce``: the paper's protocol as one resumable sweep (see
docs/DESIGN.md, 'Structure learning').

Wire into :mod:`sparse_rational.cli` with ``add_parser(sub)`` in ``build_parser`` and
``"reproduce": run`` in ``COMMANDS``. Standalone: ``python -m sparse_rational.experiments.cli
reproduce ...`` (:func:`main`: its own parser, the same errors and exit statuses through
:mod:`sparse_rational.commandline`; this module never imports :mod:`sparse_rational.cli`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from ..argtypes import nonneg_int as _nonneg_int
from ..argtypes import positive_int as _positive_int
from ..commandline import Parser, add_verbosity_args, run_command
from ..device import resolve_device
from ..errors import ParameterError, UserError
from .protocol import (  # torch-free (config.py's choices)
    BUDGETS,
    PAPER,
    PENALTY_UPDATES,
    READOUTS,
    STRUCTURE_SEARCHES,
    Budget,
    DatasetRef,
    Plan,
    configurations,
    is_contextual,
    sparse_start,
    trial_seconds,
)

BUDGET_NAMES = ("smoke", "medium", "paper")
#: the pooled Figure 3's file name, without .png / .svg
POOLED_FIGURE = "figure3-pooled"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``reproduce`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiments (baselines, structure learning, random search, reruns) and Figure 3",
        description="Fixed-size baselines and group-lasso structure learning for target sizes, each with a "
        "random hyperparameter search and reruns of its best assignment; writes results.csv, "
        "summary.md and figure3.png/.svg (with several datasets also figure3-pooled.png/.svg) into --out. "
        "Resumable: rerun the same command to continue a sweep.",
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="SPEC",
        help="amazon:{kitchen,books,dvd,electronics}, hatn:<same domains> or fdu:<domain>; repeat for one panel each",
    )
    d.add_argument("--train", help="instead of --dataset: your training file (.tsv, .jsonl or .csv)")
    d.add_argument("--dev", help="dev file (with --train; default: 10%% of --train)")
    d.add_argument("--test", help="test file (with --train)")
    d.add_argument("--data-dir", help="data root (default: $SPARSE_RATIONAL_DATA, else a cache folder)")
    d.add_argument("--split-seed", type=_nonneg_int, default=0, help="seed of the train/dev/test split (default 0)")
    d.add_argument("--max-train", type=_positive_int, help=argparse.SUPPRESS)  # quick runs: cap the training set
    p.add_argument(
        "--embeddings", help="glove-6b-50d, a GloVe/word2vec .txt(.gz) file, or hf:<model> (contextual: 12 WFSAs)"
    )
    b = p.add_argument_group("budget")
    b.add_argument(
        "--budget",
        choices=BUDGET_NAMES,
        default="medium",
        help="smoke (minutes), medium (default), paper (the authors': 20 assignments, 5 reruns, "
        "500 epochs, patience 30)",
    )
    b.add_argument("--assignments", type=_positive_int, help="random assignments per configuration (budget's)")
    b.add_argument("--reruns", type=_positive_int, help="reruns of the best assignment (budget's)")
    b.add_argument("--epochs", type=_positive_int, help="max epochs (budget's)")
    b.add_argument("--patience", type=_positive_int, help="early-stopping patience (budget's)")
    b.add_argument("--reg-epochs", type=_positive_int, help="epochs of the penalised phase (budget's)")
    b.add_argument(
        "--path-epochs",
        type=_positive_int,
        help="with --structure-search path: its longest length in epochs; it ends at the smallest "
        "target (budget's: 30, 50, 100)",
    )
    b.add_argument(
        "--baselines",
        nargs="+",
        metavar="PATTERNS",
        help="baseline structures (default: 24x1 24x2 24x3 24x4 6x1,6x2,6x3,6x4)",
    )
    b.add_argument(
        "--targets",
        nargs="+",
        type=_positive_int,
        metavar="N",
        help="target transitions of structure learning from 24x4 (default: 80 60 40 20)",
    )
    b.add_argument("--no-targets", action="store_true", help="no target-size configurations")
    b.add_argument(
        "--reg-strengths",
        nargs="+",
        type=_positive_float,
        default=[],
        metavar="LAMBDA",
        help="also learn structure with these fixed lambdas (an optional lambda grid)",
    )
    b.add_argument(
        "--tolerance",
        type=_nonneg_int,
        default=10,
        help="accept a pruned model within N transitions of its target (the authors': 10)",
    )
    b.add_argument("--search-seed", type=_nonneg_int, default=0, help="seed of the random search (default 0)")
    m = p.add_argument_group("model and structure learning (defaults: the paper's)")
    m.add_argument(
        "--readout",
        choices=READOUTS,
        default="final",
        help="a WFSA's score: its states at the document's end (final, the paper's; default), or "
        "their mean or max over the document",
    )
    m.add_argument(
        "--penalty-update",
        choices=PENALTY_UPDATES,
        default="gradient",
        help="how the group lasso acts: gradient (in the loss, the paper's; default) or proximal "
        "(group soft-threshold after each step: exact zeros)",
    )
    m.add_argument(
        "--structure-search",
        choices=STRUCTURE_SEARCHES,
        default="lambda",
        help="how the targets are reached: lambda (the authors' search per target and assignment; "
        "default) or path (one penalised run per assignment yields every target)",
    )
    x = p.add_argument_group("execution")
    x.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local process pool (default) or Ray (pip install 'sparse-rational[ray]')",
    )
    x.add_argument(
        "--workers",
        type=_positive_int,
        help="trials at a time (local default: CPU count; ray default: the cluster's CPUs)",
    )
    x.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local Ray)")
    x.add_argument("--threads-per-trial", type=_positive_int, default=1, help="torch threads per trial (default 1)")
    x.add_argument(
        "--device",
        default="auto",
        help="where trials run: auto (CUDA when the driver sees it, or with --gpus-per-trial), cpu, or cuda",
    )
    x.add_argument(
        "--trials-per-gpu",
        type=_positive_int,
        default=1,
        help="local executor on CUDA: workers per GPU, each pinned to one GPU (default 1)",
    )
    x.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="ray executor: GPUs a trial requests (default with CUDA: 1/--trials-per-gpu)",
    )
    x.add_argument(
        "--ray-install",
        action="store_true",
        help="with --ray-address: also install this package's dependencies on the nodes (Ray's pip runtime env)",
    )
    x.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    x.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, run nothing")
    x.add_argument("--report-only", action="store_true", help="rewrite the outputs from the stored trials")
    x.add_argument(
        "--trials-from",
        action="append",
        default=[],
        metavar="FOLDER",
        help="with --report-only: the outputs of these sweep folders' stored trials and reference rows "
        "together (their datasets pooled), written into --out, a folder of its own; repeat per folder",
    )
    p.add_argument(
        "--out", required=True, help="sweep folder: trials/, results.csv, summary.md, figure3.*, figure3-pooled.*"
    )
    return p


def _command(args: argparse.Namespace) -> str:
    parts = ["sparse-rational", "reproduce"]
    for ds in args.dataset:
        parts += ["--dataset", ds]
    for name in ("train", "dev", "test", "data_dir", "embeddings", "budget", "out"):
        v = getattr(args, name)
        if v is not None:
            parts += [f"--{name.replace('_', '-')}", str(v)]
    for name in (
        "split_seed",
        "max_train",
        "assignments",
        "reruns",
        "epochs",
        "patience",
        "reg_epochs",
        "path_epochs",
        "search_seed",
        "tolerance",
        "workers",
        "ray_address",
        "threads_per_trial",
    ):
        v = getattr(args, name)
        default = {"split_seed": 0, "search_seed": 0, "tolerance": 10, "threads_per_trial": 1}.get(name)
        if v is not None and v != default:
            parts += [f"--{name.replace('_', '-')}", str(v)]
    for name in ("baselines", "targets", "reg_strengths"):
        v = getattr(args, name)
        if v:
            parts += [f"--{name.replace('_', '-')}", *map(str, v)]
    if args.no_targets:
        parts.append("--no-targets")
    for name, paper in PAPER.items():
        if getattr(args, name) != paper:
            parts += [f"--{name.replace('_', '-')}", getattr(args, name)]
    if args.executor != "local":
        parts += ["--executor", args.executor]
    return shlex.join(parts)


def _resolved(files: tuple[str, str | None, str | None]) -> tuple[str, str | None, str | None]:
    """``files`` (train, dev, test) as absolute paths, for reading; the user's spelling is what is recorded.
    (``os.path.realpath``: ``Path.resolve`` raises RuntimeError on a symlink loop.)"""
    train, dev, test = (os.path.realpath(f) if f else None for f in files)
    return cast(str, train), dev, test


def _datasets(args: argparse.Namespace):
    """DatasetRefs and their sizes; reading each once here turns a bad name or file into a
    one-line error before anything starts."""
    from ..data import load_dataset, load_files  # lazy: start-up (data readers)

    if args.dataset and (args.train or args.dev or args.test):
        raise UserError("give either --dataset SPEC (repeatable) or --train/--dev/--test, not both")
    if not args.dataset and not args.train:
        raise UserError("reproduce: give --dataset SPEC or --train FILE")
    if (args.dev or args.test) and not args.train:
        raise UserError("--dev/--test go with --train")
    # read from the resolved paths (trials may run in another folder), record the user's spelling
    data_dir = os.path.realpath(args.data_dir) if args.data_dir else None
    refs: list[DatasetRef] = []
    sizes: dict[str, Any] = {}  # the splits, then the numbers of documents
    if args.train:
        given = cast("tuple[str, str | None, str | None]", (args.train, args.dev, args.test))
        splits = load_files(*_resolved(given))
        name = Path(args.train).stem
        refs.append(
            DatasetRef(
                name,
                files=given,
                split_seed=args.split_seed,
                max_train=args.max_train,
                read_from=_resolved(given),
            )
        )
        sizes[name] = splits
    else:
        if len(set(args.dataset)) != len(args.dataset):
            raise UserError("--dataset: the same dataset given twice")
        for spec in args.dataset:
            splits = load_dataset(spec, data_dir, args.split_seed)
            refs.append(
                DatasetRef(spec, spec=spec, split_seed=args.split_seed, max_train=args.max_train, data_dir=data_dir)
            )
            sizes[spec] = splits
    for ref in refs:
        s = sizes[ref.name]
        if not s.test:
            raise UserError(f"{ref.name}: no test set (Figure 3 plots test accuracy)")
        n_train = min(len(s.train), ref.max_train or len(s.train))
        sizes[ref.name] = n_train + len(s.dev)
    return refs, sizes


def _check_embeddings(name: str) -> None:
    if is_contextual(name):
        return  # loaded by the trials' library; nothing cheap to check here
    from ..embeddings.static import PACKAGED, load_word_vectors  # lazy: start-up (gzip)

    if name in PACKAGED:
        load_word_vectors(name)  # the package is there (memory-mapped, cheap)
    elif not Path(name).is_file():
        load_word_vectors(name)  # raises the library's one-line error


def build_plan(args: argparse.Namespace):
    if args.budget not in BUDGETS:
        raise UserError(f"unknown budget {args.budget!r}; use one of {', '.join(BUDGETS)}")
    budget = BUDGETS[args.budget]
    overrides = {
        k: getattr(args, k)
        for k in ("assignments", "reruns", "epochs", "patience", "reg_epochs", "path_epochs")
        if getattr(args, k) is not None
    }
    if args.path_epochs is not None and args.structure_search != "path":
        raise UserError("--path-epochs goes with --structure-search path")
    budget = replace(budget, **overrides)
    if args.no_targets and args.targets:
        raise UserError("give --targets or --no-targets, not both")
    baselines = args.baselines if args.baselines is not None else budget.baselines
    targets = () if args.no_targets else (args.targets if args.targets is not None else budget.targets)
    configs = configurations(args.embeddings, baselines, targets, args.reg_strengths)
    if not configs:
        raise UserError("nothing to run: no baselines, targets or lambdas")
    Plan(
        [],
        args.embeddings,
        budget,
        configs,
        readout=args.readout,
        penalty_update=args.penalty_update,
        structure_search=args.structure_search,
    )  # a bad combination is an error before the data is read
    refs, sizes = _datasets(args)
    plan = Plan(
        refs,
        args.embeddings,
        budget,
        configs,
        tolerance=args.tolerance,
        search_seed=args.search_seed,
        threads=args.threads_per_trial,
        device=getattr(args, "trial_device", "cpu"),
        readout=args.readout,
        penalty_update=args.penalty_update,
        structure_search=args.structure_search,
    )
    return plan, sizes


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def estimate(plan, cells, sizes: dict, records: dict, workers: int) -> tuple[float, str]:
    """Seconds of wall time left (rough): the cost model over unfinished trials, scaled by
    how the finished trials of this sweep compared with it."""
    left, ratios, seen = 0.0, [], set()
    for cell in cells:
        n = sizes[cell.dataset.name]
        reruns = cell.reruns if cell.reruns is not None else plan.rerun_trials(cell.search[0], 1e-3, cell.config)
        for spec in cell.search + reruns:
            if spec.key in seen:  # a path trial serves every target
                continue
            seen.add(spec.key)
            predicted = trial_seconds(spec, n)
            rec = records.get(spec.key)
            if rec is None:
                left += predicted
            elif rec.get("status") == "ok" and rec.get("seconds"):
                ratios.append(rec["seconds"] / trial_seconds(spec, n, expected_failures=False))
    how = "cost model"
    if len(ratios) >= 3:
        ratios.sort()
        left *= ratios[len(ratios) // 2]
        how = f"cost model scaled by {len(ratios)} finished trials"
    return left / max(workers, 1), how


def _method_lines(plan) -> list[str]:
    """How the models were made, for the summary's header."""
    paper = {k: " (the paper's)" if getattr(plan, k) == v else "" for k, v in PAPER.items()}
    lines = [
        f"Readout: {plan.readout}{paper['readout']}; penalty update: {plan.penalty_update}{paper['penalty_update']}."
    ]
    if plan.targets and plan.structure_search == "path":
        p = plan.path
        lines.append(
            f"Targets by the regularisation path (column `search`: path): one penalised run per assignment "
            f"(lambda from {p['path_start']:g}, x{p['path_growth']:g} per epoch after {p['path_warmup']} epochs "
            f"without penalty, at most {plan.budget.path_epochs} epochs) yields every target: its model is the "
            f"path's step nearest to the target within the band of +-{plan.tolerance} transitions the authors "
            "accepted (records of the earlier rule, the first step inside the band, say `first in band` in "
            "the column `snapshot`); a target the path "
            "missed is a failed attempt for that target, replaced by a new assignment. Each target's best of its "
            f"first {plan.budget.assignments} successful assignment(s) is rerun as a single-target path with a "
            "new seed (the path is walked again until that target; the found lambda is not reused), so reruns "
            "stay near the target."
        )
    elif plan.targets:
        lines.append(
            "Targets by the authors' lambda search (column `search`: lambda search), one per assignment; "
            "reruns reuse the lambda their search found, so their transitions vary."
        )
    return [*lines, ""]


def _write_outputs(
    out: Path, header: list[str], notes: list[str], datasets=(), embeddings: str = "", records: dict | None = None
) -> list[Path]:
    """results.csv, summary.md, figure3.* and figure3-pooled.* of ``out``'s trials (or of
    ``records``, read from it already); the reference rows of ``datasets`` are computed first
    where ``references.json`` lacks them (:mod:`.references`)."""
    from . import references as refs  # lazy: start-up (tempfile)
    from .store import TrialStore  # lazy: start-up (tempfile)

    records = TrialStore(out).load_all() if records is None else records
    reference_rows = refs.ensure(out, list(datasets), embeddings) if datasets and embeddings else {}
    return _write_report(out, records, header, notes, reference_rows)


def _write_report(
    out: Path, records: dict[str, dict], header: list[str], notes: list[str], reference_rows: dict[str, dict]
) -> list[Path]:
    """The outputs of ``records`` into ``out``. The pooled Figure 3 needs two datasets whose
    claims the summary judges; without them a stale one is removed (it would contradict the summary)."""
    from ..fileio import atomic_write_text  # lazy: start-up (tempfile)
    from .report import (  # lazy: start-up (torch)
        figure3,
        figure3_pooled,
        rows_from_records,
        summary_markdown,
        write_csv,
    )

    rows = rows_from_records(records)
    write_csv(rows, out / "results.csv")
    atomic_write_text(
        out / "summary.md",
        summary_markdown(rows, "sparse-rational reproduce: summary", header, notes, reference_rows),
    )
    figs = figure3(rows, out / "figure3", references=reference_rows)
    pooled = figure3_pooled(rows, out / POOLED_FIGURE, references=reference_rows)
    if not pooled:
        for ext in ("png", "svg"):
            (out / f"{POOLED_FIGURE}.{ext}").unlink(missing_ok=True)
    return [out / "results.csv", out / "summary.md", *figs, *pooled]


def _header(command: str, plan, invocations: list[dict], trial_cpu: float) -> list[str]:
    """The summary's header: the command, the budget, how the models were made, wall time."""
    b = plan.budget
    runs = [r for r in invocations if r.get("trials_run")] or invocations[-1:]  # resumes that ran nothing
    wall = (
        f"Wall time: {_fmt_seconds(sum(r['wall_seconds'] for r in runs))} over {len(runs)} invocation(s) ("
        + "; ".join(
            f"{_fmt_seconds(r['wall_seconds'])}: {r['trials_run']} trials run with {r['executor']} x {r['workers']}"
            + (" (interrupted)" if r.get("interrupted") else "")
            for r in runs
        )
        + f"); sum of trial times: {_fmt_seconds(trial_cpu)}."
    )
    return [
        f"Command: `{command}`",
        "",
        f"Budget: {b.describe()}; target tolerance +-{plan.tolerance} transitions; "
        f"sparse models start from {sparse_start(plan.embeddings)}.",
        "",
        *_method_lines(plan),
        wall,
    ]


def _plan_from_manifest(manifest: dict, data_dir: str | None):
    """The plan a sweep folder was made by, rebuilt from its ``sweep.json`` (for
    ``--report-only``); None if the manifest is too old or odd to tell."""
    try:
        ident = manifest["identity"]
        budget = Budget(
            ident["budget"],
            ident["assignments"],
            ident["reruns"],
            ident["epochs"],
            ident["patience"],
            ident["reg_epochs"],
            path_epochs=ident.get("path_epochs", BUDGETS[ident["budget"]].path_epochs),
        )
        labels = ident["configurations"]
        configs = configurations(
            ident["embeddings"],
            baselines=[x.split(" ", 1)[1] for x in labels if x.startswith("baseline ")],
            targets=[int(x.rsplit(" ", 1)[1]) for x in labels if x.startswith("sparse target ")],
            reg_strengths=[float(x.rsplit(" ", 1)[1]) for x in labels if x.startswith("sparse lambda ")],
        )
        datasets = [
            DatasetRef(
                d["name"],
                d.get("spec"),
                tuple(d["files"]) if d.get("files") else None,
                d.get("split_seed", 0),
                d.get("max_train"),
                data_dir,
                _resolved(tuple(d["files"])) if d.get("files") else None,
            )
            for d in ident["datasets"]
        ]
        return Plan(
            datasets,
            ident["embeddings"],
            budget,
            configs,
            tolerance=ident.get("tolerance", 10),
            search_seed=ident.get("search_seed", 0),
            **{k: ident.get(k, v) for k, v in PAPER.items()},
        )
    except (KeyError, TypeError, ValueError, IndexError, UserError):
        return None


def _report_only(args: argparse.Namespace, out: Path, say) -> int:
    from .store import TRIALS, TrialStore  # lazy: start-up (tempfile)

    if args.trials_from:
        return _report_of_folders(args.trials_from, out, say)
    manifest = TrialStore.read_identity(out)
    records = TrialStore(out).load_all()
    if not records:
        raise UserError(f"--out {out}: no trial records in {out / TRIALS}; nothing to report")
    data_dir = os.path.realpath(args.data_dir) if args.data_dir else None
    plan = _plan_from_manifest(manifest, data_dir)
    if plan is None:
        header, datasets, embeddings = [f"Outputs rewritten from the stored trials of `{out}`."], [], ""
    else:
        trial_cpu = sum(r.get("seconds", 0.0) for r in records.values())
        invocations = manifest.get("invocations") or []
        header = _header(str(manifest.get("command", "?")), plan, invocations, trial_cpu) if invocations else []
        header += ["", f"Outputs rewritten from the stored trials of `{out}` (`--report-only`)."]
        datasets, embeddings = plan.datasets, plan.embeddings
    paths = _write_outputs(out, header, [], datasets, embeddings, records)
    print("wrote " + ", ".join(str(p) for p in paths), file=say)
    return 0


def _report_of_folders(folders: list[str], out: Path, say) -> int:
    """``--report-only --trials-from``: the outputs of the stored trials and reference rows
    of several sweep folders together (a trial two of them hold, by its key, counts once),
    written into ``out``, which is not a sweep folder. Runs nothing, computes nothing."""
    from . import references as refs  # lazy: start-up (tempfile)
    from .store import OUTPUTS, SWEEP, TRIALS, TrialStore  # lazy: start-up (tempfile)

    if (out / SWEEP).exists():
        raise UserError(
            f"--out {out}: a sweep folder; --trials-from writes into a folder of its own "
            f"(name {out} in --trials-from to include its trials)"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(p.name not in OUTPUTS and not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"--out {out}: holds files that are not a report's; refusing to write into it")
    records: dict[str, dict] = {}
    reference_rows: dict[str, dict] = {}
    lines = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not folder.is_dir():
            raise UserError(f"--trials-from {folder}: no such folder")
        if not (folder / SWEEP).is_file():
            raise UserError(f"--trials-from {folder}: no {SWEEP}; not a sweep folder")
        manifest = TrialStore.read_identity(folder)
        found = TrialStore(folder).load_all()
        if not found:
            raise UserError(f"--trials-from {folder}: no trial records in {folder / TRIALS}")
        records.update(found)
        for ds, entry in refs.load(folder).items():
            if isinstance(entry, dict) and isinstance(entry.get("rows"), dict):
                reference_rows.setdefault(ds, entry["rows"])
        lines.append(f"- `{folder}`, {len(found)} trial records, made by `{manifest.get('command', '?')}`")
    header = [
        f"Outputs written from the stored trials of {len(lines)} sweep folder(s) (`--report-only --trials-from`), "
        "running none:",
        "",
        *lines,
    ]
    out.mkdir(parents=True, exist_ok=True)
    paths = _write_report(out, records, header, [], reference_rows)
    print("wrote " + ", ".join(str(p) for p in paths), file=say)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM during a sweep: stopped like Ctrl-C, exit status 128 + 15."""


def _sigterm_as_interrupt():
    """A scheduler's or a user's SIGTERM stops the sweep like Ctrl-C: running trials are
    stopped, finished ones are kept. Returns the previous handler (None off the main thread)."""

    def interrupt(signum, frame):
        raise _Terminated

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


def _interrupted(
    plan,
    store,
    out: Path,
    args: argparse.Namespace,
    finished_before: int,
    wall: float,
    executor,
    terminated: bool = False,
) -> int:
    """One line on stderr: what is saved and how to go on; exit status 130 (143 for SIGTERM)."""
    from .sweep import count_trials, prepare_cells, usable_records  # lazy: start-up (tqdm)

    records = usable_records(store, args.retry_failed)
    cells, finished = prepare_cells(plan, records)
    total = count_trials(plan, cells)
    try:  # this invocation's wall time counts in the summary of the finished sweep
        store.add_invocation(
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - wall)),
                "wall_seconds": round(wall, 1),
                "trials_run": max(0, finished - finished_before),
                "found_finished": finished_before,
                "executor": executor.name,
                "workers": executor.capacity,
                "interrupted": True,
            }
        )
    except (OSError, ValueError):
        pass
    print(
        f"sparse-rational: {'terminated' if terminated else 'interrupted'}: {finished} of {total} trials "
        f"finished and saved in {out}; run the same command again to continue",
        file=sys.stderr,
    )
    return 143 if terminated else 130


def _devices(args: argparse.Namespace) -> tuple[int, float]:
    """Where the trials run: sets ``args.trial_device`` ("cpu" or "cuda"); returns the
    driver's GPUs for the local executor and the GPUs a Ray trial requests."""
    spec = (args.device or "auto").strip().lower()
    if spec not in ("auto", "cpu", "cuda"):
        raise ParameterError("device", f"{spec!r}: reproduce runs trials on auto, cpu or cuda")
    if args.gpus_per_trial is not None and (args.gpus_per_trial <= 0 or args.executor != "ray"):
        raise ParameterError("gpus_per_trial", "a number > 0, with --executor ray")
    cuda = False
    if args.executor == "ray" and (args.gpus_per_trial or spec == "cuda"):
        cuda = spec != "cpu"  # the cluster's GPUs, not the driver's
    elif spec != "cpu":
        cuda = resolve_device(spec).type == "cuda"  # a one-line error for cuda without CUDA
    if args.trials_per_gpu != 1 and not cuda:
        raise ParameterError("trials_per_gpu", "needs trials on CUDA (--device cuda or auto with a GPU)")
    args.trial_device = "cuda" if cuda else "cpu"
    if not cuda:
        return 0, 0.0
    if args.executor == "ray":
        return 0, args.gpus_per_trial or 1.0 / args.trials_per_gpu
    import torch  # lazy: start-up (torch)

    return torch.cuda.device_count(), 0.0


def run(args: argparse.Namespace, out_stream=None) -> int:
    """Plan, print the trial count and an estimate, run the sweep, write the outputs."""
    from .executors import make_executor  # lazy: start-up (multiprocessing)
    from .store import SWEEP, TrialStore  # lazy: start-up (tempfile)
    from .sweep import count_trials, prepare_cells, run_sweep, usable_records  # lazy: start-up (tqdm)

    say = out_stream or sys.stdout
    if not args.out:  # Path("") is the current folder: a sweep written there for an unset $OUT
        raise UserError("--out: an empty path; give a folder")
    out = Path(args.out)
    store = TrialStore(out)
    if args.trials_from and not args.report_only:
        raise UserError("--trials-from goes with --report-only")
    if args.report_only:
        return _report_only(args, out, say)
    if not args.embeddings:
        raise UserError("reproduce: --embeddings is required (glove-6b-50d, a vectors file or hf:<model>)")
    if args.executor == "local" and args.ray_address:
        raise UserError("--ray-address goes with --executor ray")
    gpus, gpus_per_trial = _devices(args)  # sets args.trial_device
    plan, sizes = build_plan(args)
    _check_embeddings(args.embeddings)
    try:
        import matplotlib  # noqa: F401  # lazy: optional (matplotlib); Figure 3: fail now, not after the sweep
    except ImportError:
        raise UserError("reproduce draws Figure 3 with matplotlib: pip install 'sparse-rational[reproduce]'") from None
    identity = plan.identity()
    command = _command(args)
    if (out / SWEEP).is_file():
        store.claim(identity, command)  # checks it is the same command (a one-line error if not)
    records = usable_records(store, args.retry_failed)
    cells, finished = prepare_cells(plan, records)
    cores = os.cpu_count() or 1
    workers_guess = args.workers or max(1, cores // args.threads_per_trial)
    left, how = estimate(plan, cells, sizes, records, workers_guess)
    b = plan.budget
    n_cells = len(plan.cells)
    print(
        f"reproduce: {len(plan.datasets)} dataset(s) x {len(plan.configs)} configurations "
        f"({', '.join(c.label for c in plan.configs)})",
        file=say,
    )
    print(
        f"budget {b.describe()}"
        + (f", path at most {b.path_epochs} epochs" if plan.structure_search == "path" else ""),
        file=say,
    )
    planned = count_trials(plan, cells)
    replaced = planned - plan.total_trials + sum(b.reruns for c in cells if c.reruns == [])
    dropped = sum(b.reruns for c in cells if c.reruns == [])
    extra = (f" +{replaced} replacing failed searches" if replaced else "") + (
        f" -{dropped} reruns of configurations whose searches all failed" if dropped else ""
    )
    if plan.structure_search == "path":
        n_own, k = len(plan.datasets) * plan.own_search_cells, len(plan.targets)
        count = (
            f"{n_own} x ({b.assignments} + {b.reruns}) + " if n_own else ""
        ) + f"{len(plan.datasets)} x ({b.assignments} path(s) for {k} targets + {k} x {b.reruns} reruns)"
    else:
        count = f"{n_cells} x ({b.assignments} + {b.reruns})"
    runs, how_runs = plan.penalised_runs()
    pen = f"; {runs} penalised runs for the targets ({how_runs})" if runs else ""
    print(
        f"{plan.total_trials} trials = {count}{extra}{pen}; up to "
        f"{plan.max_replacements} more per configuration if searches fail; {finished} already finished; "
        f"estimate ~{_fmt_seconds(left)} with {workers_guess} worker(s) ({how})",
        file=say,
        flush=True,
    )
    if args.dry_run:
        return 0
    # the executor first: an unreachable Ray address must not leave a claimed folder behind
    executor = make_executor(
        args.executor,
        args.workers,
        args.ray_address,
        args.threads_per_trial,
        gpus=gpus,
        trials_per_gpu=args.trials_per_gpu,
        gpus_per_trial=gpus_per_trial,
        install=args.ray_install,
    )
    lock = previous = stop = None
    try:
        store.claim(identity, command)
        lock = store.lock()
        t0 = time.perf_counter()
        previous = _sigterm_as_interrupt()
        try:
            result = run_sweep(plan, executor, store, retry_failed=args.retry_failed, progress=not args.quiet)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: run_sweep stopped the running trials
            stop = exc
    finally:
        executor.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if lock is not None:
            lock.close()
    wall = time.perf_counter() - t0
    if stop is not None:
        return _interrupted(plan, store, out, args, finished, wall, executor, isinstance(stop, _Terminated))
    trial_cpu = sum(r.get("seconds", 0.0) for r in store.load_all().values())
    runs = store.add_invocation(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - wall)),
            "wall_seconds": round(wall, 1),
            "trials_run": result.ran,
            "failed": result.failed,
            "found_finished": result.finished_before,
            "executor": executor.name,
            "workers": executor.capacity,
        }
    )
    header = _header(command, plan, runs, trial_cpu)
    paths = _write_outputs(out, header, result.notes, plan.datasets, plan.embeddings)
    print(
        f"{result.ran} trials run ({result.failed} failed), {result.finished_before} skipped as finished; "
        f"{_fmt_seconds(wall)} wall",
        file=say,
    )
    print("wrote " + ", ".join(str(p) for p in paths), file=say)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser: ``sparse-rational reproduce`` alone (:func:`add_parser`, with
    ``--quiet``/``--verbose`` as on every subcommand of :mod:`sparse_rational.cli`)."""
    parser = Parser(prog="sparse-rational", description="the paper's experiments as one resumable sweep")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_verbosity_args(add_parser(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``sparse-rational reproduce`` with the main command line's
    error handling and exit statuses (:func:`sparse_rational.commandline.run_command`).
    ``argv``: the options of ``reproduce``, with or without the word ``reproduce`` first
    (default: ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return run_command(build_parser(), {"reproduce": run}, argv if argv[:1] == ["reproduce"] else ["reproduce", *argv])


if __name__ == "__main__":
    sys.exit(main())

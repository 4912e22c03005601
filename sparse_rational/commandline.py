"""What every command line of the package shares: the parser whose errors are one line,
``--quiet``/``--verbose``, and :func:`run_command`, the error handling and exit statuses of
``sparse-rational`` (:func:`sparse_rational.cli.main`) and of the standalone ``reproduce``
(``python -m sparse_rational.experiments.cli``).

Every error caused by the user's input is one line on stderr and exit status 2
(:data:`EXIT_USAGE`); a run whose loss or weights became NaN, 3 (:data:`EXIT_DIVERGED`); a
worker process that died (``predict --workers``), one line and 1.
Importing this module imports no torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .config import flag
from .errors import (
    ParameterError,
    Terminated,
    TrainingDiverged,
    UserError,
    WorkerFailed,
    clear_terminated,
    note_terminated,
    one_line,
)
from .log import ROOT, set_verbosity

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_USAGE",
    "Parser",
    "Terminated",
    "add_verbosity_args",
    "check_output",
    "check_output_file",
    "command_of",
    "run_command",
    "set_verbosity_for",
]

EXIT_USAGE = 2
EXIT_DIVERGED = 3  # the loss or the weights became NaN or infinite


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        raise UserError(f"{message} (see {self.prog} --help)")


def add_verbosity_args(p: argparse.ArgumentParser) -> None:
    """``--quiet`` / ``--verbose`` on every command: the level of the library's log (see
    :mod:`sparse_rational.log`); results on stdout and errors are never silenced."""
    known = {s for action in p._actions for s in action.option_strings}
    group = p.add_mutually_exclusive_group()
    if "--quiet" not in known:
        group.add_argument(
            "--quiet",
            action="store_true",
            help="no progress bars or per-epoch lines: only what was resumed or replaced, warnings and errors",
        )
    group.add_argument("--verbose", action="store_true", help="also debugging detail (kernels, threads, timings)")


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def set_verbosity_for(args: argparse.Namespace) -> int:
    """Set the library's level for this command; returns the level it had."""
    before = logging.getLogger(ROOT).level
    set_verbosity("notice" if getattr(args, "quiet", False) else "debug" if args.verbose else "info")
    return before


PathArg = str | os.PathLike | None


def _resolved(path: str | os.PathLike) -> Path:
    """``path`` absolute, with links and ``..`` resolved as far as it exists."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """One file under two names: ``os.path.samefile`` when both exist (links, hard links),
    else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is not there yet
        return _resolved(a) == _resolved(b)


def check_output(
    path: PathArg,
    option: str,
    inputs: Mapping[str, PathArg] | Iterable[PathArg] = (),
    model_dir: PathArg = None,
) -> None:
    """Refuse, in one line (a :class:`UserError`, exit 2) and before any work, an output
    ``path`` given as ``option`` that would overwrite what the command reads: one of
    ``inputs`` (the same file, also through a link; a mapping names each input's option), or
    anything inside the model folder ``model_dir``. None and ``-`` (standard output) pass; an
    empty path (a shell variable that was not set) is refused, never read as "no output"."""
    if path is None or str(path) == "-":
        return
    if not str(path):
        raise UserError(f"{option}: an empty path; give a file name")
    if model_dir is not None and str(model_dir) != "-":
        folder, target = _resolved(model_dir), _resolved(path)
        inside = target == folder or folder in target.parents
        if not inside and os.path.isfile(path) and os.path.isdir(model_dir):
            with os.scandir(os.fspath(model_dir)) as entries:  # a hard link to one of the model's files
                inside = any(entry.is_file() and _same_file(entry.path, path) for entry in entries)
        if inside:
            where = f"{option} {one_line(path)} is inside the model folder {one_line(model_dir)}"
            raise UserError(f"{where}: it would overwrite the model")
    named = inputs.items() if isinstance(inputs, Mapping) else ((None, source) for source in inputs)
    for name, source in named:
        if source is None or str(source) == "-":
            continue
        if _same_file(path, source):
            what = f" ({name})" if name else ""
            raise UserError(
                f"{option} {one_line(path)} is the input file {one_line(source)}{what}: it would be overwritten"
            )


def check_output_file(path: PathArg, option: str) -> None:
    """Refuse in one line (a :class:`UserError`, exit 2), before any work, an output file
    ``path`` that could not be written at the end: a folder, or in a folder that does not
    exist. None and ``-`` (standard output) pass."""
    if path is None or str(path) == "-":
        return
    if os.path.isdir(path):
        raise UserError(f"{option} {one_line(path)}: is a folder")
    parent = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(parent):
        raise UserError(f"{option} {one_line(path)}: folder {one_line(parent)} does not exist")


def _on_sigterm(signum, frame):
    note_terminated()  # checked again after each checkpoint, should this exception be lost
    raise Terminated()


def _say(text: str) -> None:
    if sys.stderr is not None:  # one line, whatever a message quotes (a path holding a newline)
        print(f"sparse-rational: {one_line(text)}", file=sys.stderr)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command line: ``sparse-rational: warning: MESSAGE``,
    one line (Python's shows the file, the line and the source line: two lines)."""
    text = one_line(message).removeprefix("sparse_rational: ")
    _say(f"warning: {text}" if issubclass(category, RuntimeWarning) else f"warning: {category.__name__}: {text}")


def _lossless_stdout() -> None:
    """A file name that is not UTF-8 (``os.fsdecode`` keeps its bytes as lone surrogates)
    is printed as its own bytes, as ``ls`` does, not a UnicodeEncodeError after the work."""
    try:
        if sys.stdout is not None and sys.stdout.errors == "strict":
            sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # not a text wrapper: leave it
        pass


def run_command(
    parser: argparse.ArgumentParser,
    commands: Mapping[str, Callable[[argparse.Namespace], int]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) with ``parser``, whose subcommand is
    ``args.command``, and run ``commands[args.command](args)``; every error the user caused
    is one line on stderr and an exit status (module doc). ``args.argv`` holds ``argv``:
    the provenance of what the command makes."""
    level = None
    try:
        previous, restore = signal.signal(signal.SIGTERM, _on_sigterm), True
    except ValueError:  # not the main thread: leave signals alone
        previous, restore = None, False
    _lossless_stdout()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the provenance of what it makes
        level = set_verbosity_for(args)
        with warnings.catch_warnings():  # a warning (the kernel's fallback, a library's) is one line
            warnings.showwarning = _one_line_warning
            return commands[args.command](args)
    except TrainingDiverged as exc:  # not bad input, but the same one line
        _say(f"error: {exc}")
        return EXIT_DIVERGED
    except ParameterError as exc:  # the library names its parameter; here it is an option
        _say(f"error: {exc.render(flag)}")
        return EXIT_USAGE
    except UserError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except WorkerFailed as exc:  # a worker process died: what was written is whole, the message says how much
        _say(f"error: {exc}")
        return 1
    except BrokenPipeError:  # a reader that went away (| head): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, AttributeError, ValueError):
            pass
        return 0
    except OSError as exc:  # disk full, permissions: still one line, naming the user's path
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"error: {where}{exc.strerror or exc}")
        return 1
    except Terminated:
        _say("terminated")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    finally:
        clear_terminated()
        if restore:
            signal.signal(signal.SIGTERM, previous)
        if level is not None:  # called in a process that goes on (tests, notebooks)
            set_verbosity(level)

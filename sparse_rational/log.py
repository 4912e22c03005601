"""The library's messages: standard :mod:`logging`, one logger per module under ``sparse_rational``.

What a run says (the data it read, a line per epoch, the pruning, a replaced folder, a
warning) goes to the logger of the module that says it (``sparse_rational.train``,
``sparse_rational.learn``, ...). Like other libraries that print progress by default, the
package's root logger ``sparse_rational`` has a handler of its own that writes to stderr
(through tqdm, so progress bars are not torn), at level INFO, and does not propagate.

An API user silences everything with ``set_verbosity("error")`` (or ``logging.getLogger(
"sparse_rational").setLevel(logging.ERROR)``), or routes the messages into their own
logging set-up with :func:`use_own_handlers`. Progress bars follow the level: they are
shown only while INFO messages are, and only on a terminal.
"""

from __future__ import annotations

import logging
import sys

__all__ = [
    "NOTICE",
    "ROOT",
    "get_logger",
    "progress_disable",
    "set_verbosity",
    "use_default_handler",
    "use_own_handlers",
]

ROOT = "sparse_rational"
NOTICE = 25  # between INFO and WARNING: a run resumed, a checkpoint or folder replaced (kept by --quiet)
logging.addLevelName(NOTICE, "NOTICE")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
PREFIX = "sparse-rational: "


class _Formatter(logging.Formatter):
    """``MESSAGE`` for progress; ``sparse-rational: warning: MESSAGE`` for warnings; and
    ``sparse-rational: MESSAGE`` for notes logged with ``extra={"prefixed": True}`` (what
    the command line printed before it logged)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"{PREFIX}error: {message}"
        if record.levelno >= logging.WARNING:
            return f"{PREFIX}warning: {message}"
        if record.levelno >= NOTICE or getattr(record, "prefixed", False):
            return PREFIX + message
        return message


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up at every record, so redirections and
    test capture work) with ``tqdm.write``, which keeps an open progress bar intact. A
    closed or missing stderr drops the message: a note is not worth a crash."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if stream is None:
            return
        try:
            from tqdm import tqdm  # lazy: start-up (tqdm)

            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


_default_handler: logging.Handler | None = None


def _root() -> logging.Logger:
    global _default_handler
    root = logging.getLogger(ROOT)
    if _default_handler is None:
        _default_handler = _StderrHandler()
        _default_handler.setFormatter(_Formatter())
        root.addHandler(_default_handler)
        root.propagate = False
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
    return root


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``__name__``), under the package's root logger."""
    _root()
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def set_verbosity(level: int | str) -> None:
    """The package's level: ``"debug"``, ``"info"`` (the default: progress and notes),
    ``"notice"`` (what ``--quiet`` keeps: a run resumed, a checkpoint or a folder replaced,
    and warnings), ``"warning"`` (warnings only) or ``"error"`` (nothing; errors are raised,
    not logged), or a :mod:`logging` level number."""
    if isinstance(level, str):
        if level.lower() not in LEVELS:
            raise ValueError(f"verbosity {level!r} is not one of {', '.join(LEVELS)}")
        level = LEVELS[level.lower()]
    _root().setLevel(level)


def use_own_handlers() -> None:
    """Remove the package's stderr handler and let its records propagate to the handlers
    the application configured (``logging.basicConfig``, a file, a log service)."""
    root = _root()
    if _default_handler is not None:
        root.removeHandler(_default_handler)
    root.propagate = True


def use_default_handler() -> None:
    """Undo :func:`use_own_handlers`: the package writes to stderr itself again."""
    root = _root()
    if _default_handler is not None and _default_handler not in root.handlers:
        root.addHandler(_default_handler)
    root.propagate = False


def progress_disable(verbose: bool = True) -> bool | None:
    """tqdm's ``disable`` for a progress bar: off when ``verbose`` is false or INFO messages
    are not shown; otherwise None (tqdm shows it on a terminal only)."""
    return None if verbose and _root().isEnabledFor(logging.INFO) else True

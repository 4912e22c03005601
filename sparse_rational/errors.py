"""The exceptions the command line turns into one-line errors (exit 2), and the one helper
that makes any text fit on one line."""

import re

# Characters that end a line for str.splitlines(), plus the other C0/C1 controls.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` (or an exception's message) on one line: every run of line-breaking or
    control characters becomes one space (other spaces are kept: they may be part of a
    value the message quotes); cut to ``limit`` characters (with "...") if given; an
    exception with no message gives its type's name."""
    out = _LINE_BREAKING.sub(" ", str(text)).strip()
    if not out and isinstance(text, BaseException):
        out = type(text).__name__
    if limit is not None and len(out) > limit:
        out = out[:limit] + "..."
    return out


class UserError(Exception):
    """Bad input from the user: a file, a line, an option. Its message is one line."""


class DataError(UserError):
    """A data file that cannot be read or parsed; the message names the file (and line)."""


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; training stopped (one-line message)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: what was saved is said, then exit 128 + 15."""


_TERMINATING = [False]  # set by the command line's SIGTERM handler


def note_terminated() -> None:
    """Remember that SIGTERM arrived (the command line's handler calls it before raising)."""
    _TERMINATING[0] = True


def clear_terminated() -> None:
    """Forget it (the command is over: in a process that goes on, tests or notebooks)."""
    _TERMINATING[0] = False


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` again if SIGTERM arrived: its first exception can be lost
    (Python ignores an exception raised while a finaliser runs), so a long run checks here,
    after each checkpoint, and stops then at the latest."""
    if _TERMINATING[0]:
        raise Terminated()


class WorkerFailed(Exception):
    """A worker process died or failed (``predict --workers``); the one-line message says how
    many results were written before it. Not the user's input: exit status 1."""


class ParameterError(UserError):
    """A bad value of a named parameter. The library's message names the parameter as the
    API spells it (``reg_strength``); the command line shows the option (``--reg-strength``).

    ``message`` is prefixed with ``param: ``, unless it names the parameter itself anywhere,
    written ``{param}`` (``"{embeddings} hf:x: folder not found"``). Other parameters the
    message mentions are written ``{name}`` and listed in ``mentions``. Only these names
    are replaced: any other brace (in a path, a value) is kept as it is."""

    def __init__(self, param: str, message: str, *mentions: str):
        self.param, self.message, self.mentions = param, message, mentions
        super().__init__(self.render(lambda name: name))

    def render(self, spell) -> str:
        """The message with every parameter name spelled by ``spell``."""
        names = {self.param, *self.mentions}
        text = re.sub(r"\{(\w+)\}", lambda m: spell(m[1]) if m[1] in names else m[0], self.message)
        return text if "{" + self.param + "}" in self.message else f"{spell(self.param)}: {text}"

"""One-line warnings on stderr: ``sparse-rational: warning: MESSAGE``.

Warnings are for input that is accepted but probably not what the user meant (a skipped
line, a dev set far smaller than asked, word vectors that cover almost none of the data).
Each is one line; the run goes on.
"""

from __future__ import annotations

import sys

from .errors import one_line

__all__ = ["PREFIX", "warn"]

PREFIX = "sparse-rational: warning: "


def warn(message: str) -> None:
    """Write ``sparse-rational: warning: MESSAGE`` as one line to stderr (never raises)."""
    text = one_line(message)
    stream = sys.stderr
    if stream is None:  # pythonw, or stderr closed by the caller
        return
    try:
        print(PREFIX + text, file=stream, flush=True)
    except (OSError, ValueError, AttributeError):  # closed or broken stderr: a warning is not worth a crash
        pass

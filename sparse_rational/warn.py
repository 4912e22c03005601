"""One-line warnings: ``sparse-rational: warning: MESSAGE`` (logged at WARNING, see :mod:`.log`).

Warnings are for input that is accepted but probably not what the user meant (a skipped
line, a dev set far smaller than asked, word vectors that cover almost none of the data).
Each is one line; the run goes on.
"""

from __future__ import annotations

from .errors import one_line
from .log import get_logger

__all__ = ["PREFIX", "warn"]

PREFIX = "sparse-rational: warning: "
_logger = get_logger("sparse_rational.warn")


def warn(message: str) -> None:
    """Log ``MESSAGE`` as one line at WARNING (on stderr: ``sparse-rational: warning: MESSAGE``);
    never raises, even with stderr closed."""
    _logger.warning(one_line(message))

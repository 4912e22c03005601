"""Reading labelled text: the two benchmark datasets and the user's own files.

The code lives by topic in :mod:`.reading` (examples, bytes, encodings, one-line errors),
:mod:`.files` (TSV / JSONL / CSV files, :func:`load_files`), :mod:`.splitting` (stratified
splits) and :mod:`.benchmarks` (Blitzer et al. and FDU-MTL); this module keeps the names it
always exported.

Everything that can go wrong with a file raises :class:`DataError` (a :class:`UserError`)
whose message is one line, ``FILE:LINE: what is wrong``; nothing else escapes, whatever the
bytes in the file.
"""

from __future__ import annotations

from sparse_rational.data.benchmarks import (
    AMAZON_DOMAINS,
    ENV_VAR,
    FDU_DEV_SIZE,  # noqa: F401
    FDU_DOMAINS,
    default_cache_dir,
    load_dataset,
    read_reviews,
)
from sparse_rational.data.files import SUPPORTED_FILES, load_file, load_files  # noqa: F401
from sparse_rational.data.reading import Example, Splits

__all__ = [
    "AMAZON_DOMAINS",
    "ENV_VAR",
    "FDU_DOMAINS",
    "Example",
    "Splits",
    "default_cache_dir",
    "load_dataset",
    "load_file",
    "load_files",
    "read_reviews",
]

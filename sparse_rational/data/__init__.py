"""The data layer: benchmark datasets (benchmarks.py: amazon:, hatn:, fdu:), the user's own
files (files.py), data already in memory (memory.py), splitting (splitting.py), reading and
decoding (reading.py), and the tokenizer; loaders.py keeps the names it always exported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparse_rational.lazy import lazy_names

# The names below are imported on first use: `predict` imports the tokenizer (data.tokenize)
# and should not pay for the benchmark readers and their HTML parsing.
_LAZY = {
    "AMAZON_DOMAINS": "benchmarks",
    "ENV_VAR": "benchmarks",
    "FDU_DOMAINS": "benchmarks",
    "HATN_DOMAINS": "benchmarks",
    "default_cache_dir": "benchmarks",
    "load_dataset": "benchmarks",
    "read_reviews": "benchmarks",
    "load_file": "files",
    "load_files": "files",
    "examples_from": "memory",
    "splits_from": "memory",
    "texts_from": "memory",
    "Example": "reading",
    "Splits": "reading",
}

if TYPE_CHECKING:
    from sparse_rational.data.benchmarks import (
        AMAZON_DOMAINS,
        ENV_VAR,
        FDU_DOMAINS,
        HATN_DOMAINS,
        default_cache_dir,
        load_dataset,
        read_reviews,
    )
    from sparse_rational.data.files import load_file, load_files
    from sparse_rational.data.memory import examples_from, splits_from, texts_from
    from sparse_rational.data.reading import Example, Splits

# Not lazy: importing the submodule data.tokenize (as predict does) would set the package's
# attribute `tokenize` to the module, hiding the function.
from sparse_rational.data.tokenize import tokenize  # noqa: E402

__all__ = [
    "AMAZON_DOMAINS",
    "ENV_VAR",
    "FDU_DOMAINS",
    "HATN_DOMAINS",
    "Example",
    "Splits",
    "default_cache_dir",
    "examples_from",
    "load_dataset",
    "load_file",
    "load_files",
    "read_reviews",
    "splits_from",
    "texts_from",
    "tokenize",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

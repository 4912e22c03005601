"""The data layer: benchmark datasets (benchmarks.py: amazon:, hatn:, fdu:), the user's own
files (files.py), data already in memory (memory.py), splitting (splitting.py), reading and
decoding (reading.py), and the tokenizer; loaders.py keeps the names it always exported."""

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
from sparse_rational.data.tokenize import tokenize

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

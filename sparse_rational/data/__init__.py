"""The data layer: benchmark datasets, the user's own files, and the tokenizer."""

from sparse_rational.data.loaders import (
    AMAZON_DOMAINS,
    ENV_VAR,
    FDU_DOMAINS,
    Example,
    Splits,
    default_cache_dir,
    load_dataset,
    load_file,
    load_files,
    read_reviews,
)
from sparse_rational.data.tokenize import tokenize

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
    "tokenize",
]

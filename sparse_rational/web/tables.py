"""Table 1 of the page (top and bottom phrases per WFSA over the training documents): where
its training documents come from, for ``sparse-rational demo`` (:mod:`.cli`) and the page of
``sparse-rational serve`` (:mod:`.server`) alike.

:class:`TableSource` holds the ``--dataset``/``--train``/``--data-dir``/``--split-seed``/
``--top-k``/``--no-table`` options of both commands; :func:`table_for` reads the documents
and summarises them. Importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..explain.phrases import PatternSummary
    from ..pipeline import TextClassifier

__all__ = ["NEEDS_DOCUMENTS", "TableSource", "table_for"]

NEEDS_DOCUMENTS = "Table 1 needs the training documents: give --dataset or --train."


@dataclass(frozen=True)
class TableSource:
    """Where Table 1's training documents come from (the options of ``demo`` and ``serve``)."""

    dataset: str | None = None  # amazon:<domain> or fdu:<domain>: its training split
    train: str | None = None  # a training file
    data_dir: str | None = None
    split_seed: int = 0
    top_k: int = 4  # phrases per pattern and direction
    no_table: bool = False  # leave Table 1 out


def table_for(source: TableSource, clf: TextClassifier) -> tuple[list[PatternSummary] | None, str]:
    """``(patterns, note)`` for Table 1: from ``source.dataset`` or ``source.train`` (the
    command line) only; None and the reason otherwise. A model folder is data, never a
    pointer that is followed: the dataset its metrics.json records is not read."""
    from ..data import load_dataset, load_files  # lazy: start-up (data readers)
    from .demo import table_one  # lazy: start-up (torch)

    if source.no_table:
        return None, "Table 1 was left out (--no-table)."
    if source.dataset:
        splits = load_dataset(source.dataset, source.data_dir, source.split_seed)
        return table_one(clf, splits, source.top_k, source.dataset)
    if source.train:
        return table_one(clf, load_files(source.train), source.top_k, source.train)
    return None, NEEDS_DOCUMENTS

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

from ..errors import UserError

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


def table_for(
    source: TableSource, clf: TextClassifier, explicit_only: bool = False
) -> tuple[list[PatternSummary] | None, str]:
    """``(patterns, note)`` for Table 1: from ``source.dataset``/``source.train``, else from the
    dataset the model's metrics.json records (unless ``explicit_only``); None and the reason
    otherwise."""
    from ..data import load_dataset, load_files
    from .demo import say, table_one

    if source.no_table:
        return None, "Table 1 was left out (--no-table)."
    if source.dataset:
        splits = load_dataset(source.dataset, source.data_dir, source.split_seed)
        return table_one(clf, splits, source.top_k, source.dataset)
    if source.train:
        return table_one(clf, load_files(source.train), source.top_k, source.train)
    recorded = clf.metrics.get("dataset")
    if explicit_only or not recorded:
        return None, NEEDS_DOCUMENTS
    try:
        if isinstance(recorded, str):
            splits, name = load_dataset(recorded, source.data_dir, source.split_seed), recorded
        elif isinstance(recorded, dict) and recorded.get("train"):
            splits, name = load_files(recorded["train"], recorded.get("dev")), str(recorded["train"])
        else:
            return None, NEEDS_DOCUMENTS
        say(f"Table 1 from {name} (recorded in the model's metrics.json; --no-table leaves it out)")
        return table_one(clf, splits, source.top_k, name)
    except UserError as exc:
        say(f"warning: Table 1 left out: the recorded training data cannot be read ({exc})")
        return None, NEEDS_DOCUMENTS

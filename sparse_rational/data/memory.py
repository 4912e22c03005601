"""Data already in memory: lists of ``(text, label)`` pairs, pandas DataFrames, Hugging Face
``datasets.Dataset`` objects and dicts of columns, turned into the :class:`Example` lists and
:class:`Splits` the rest of the library reads.

Each becomes exactly what the same rows give as a TSV file (:func:`~sparse_rational.data.load_file`):
texts and labels stripped, a row with a label and no text skipped with one warning (an
error with ``strict``), labels compared as strings, and, without a dev set, 10 % of the
training rows carved off as one (stratified, seed 0). pandas and datasets are never
imported here: a DataFrame or a Dataset is recognised by what it offers.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sparse_rational.data.files import _carve_dev, _check_labels
from sparse_rational.data.reading import Example, Splits
from sparse_rational.errors import DataError
from sparse_rational.warn import warn

__all__ = ["examples_from", "label_text", "splits_from", "texts_from"]


def _kind(data: Any) -> str:
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "columns"):
        return "DataFrame"
    if module == "datasets" and hasattr(data, "column_names"):
        return "Dataset"
    if isinstance(data, Mapping):
        return "dict"
    return "rows"


def label_text(label: Any, where: str) -> str:
    """A label as the string a file would hold: strings stripped, integers (numpy's too)
    and booleans written out; anything else (a float, None, NaN) is refused."""
    if isinstance(label, str):
        text = label.strip()
    elif isinstance(label, numbers.Integral):  # int, bool, numpy integers
        text = str(label)
    elif hasattr(label, "item") and not isinstance(label, float):  # a numpy scalar of another kind
        return label_text(label.item(), where)
    else:
        raise DataError(f"{where}: label {label!r} is not a string or an integer")
    if not text:
        raise DataError(f"{where}: empty label")
    return text


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: text is {type(value).__name__} {str(value)[:40]!r}, not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{where}: not valid Unicode text (a lone surrogate)") from None
    return value.strip()


def _columns(data: Any, kind: str, text_column: str, label_column: str | None, name: str) -> Iterator[tuple]:
    names = list(data.columns if kind == "DataFrame" else data.column_names if kind == "Dataset" else data.keys())
    for column in (text_column, label_column):
        if column is not None and column not in names:
            shown = ", ".join(map(str, names[:10])) or "none"
            raise DataError(f"{name}: no column {column!r} (columns: {shown}); name it with text_column/label_column")
    texts = data[text_column]
    labels = data[label_column] if label_column is not None else None
    texts = texts.tolist() if hasattr(texts, "tolist") else list(texts)
    if labels is not None:
        labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        if len(labels) != len(texts):
            raise DataError(f"{name}: {len(texts)} texts but {len(labels)} labels")
        return iter(zip(texts, labels))
    return ((t,) for t in texts)


def examples_from(
    data: Any,
    *,
    text_column: str = "text",
    label_column: str = "label",
    name: str = "data",
    strict: bool = False,
) -> list[Example]:
    """Labelled examples from ``data``: a sequence of ``(text, label)`` pairs or
    :class:`Example` objects, a pandas DataFrame or a ``datasets.Dataset`` (columns
    ``text_column`` and ``label_column``), or a dict of those two columns. Errors name
    ``name`` and the row (counted from 1)."""
    if isinstance(data, (str, bytes)):
        raise DataError(f"{name}: expected rows of (text, label), got a single {type(data).__name__}")
    kind = _kind(data)
    rows: Iterable = _columns(data, kind, text_column, label_column, name) if kind != "rows" else _pairs(data, name)
    examples: list[Example] = []
    skipped = []
    for number, row in enumerate(rows, 1):
        where = f"{name} row {number}"
        text, label = _text(row[0], where), label_text(row[1], where)
        if not text:
            if strict:
                raise DataError(f"{where}: empty document (label {label!r}, no text)")
            skipped.append(number)
            continue
        examples.append(Example(text, label))
    if skipped:
        warn(f"{name}: skipped {len(skipped)} rows with a label and no text (rows {', '.join(map(str, skipped[:5]))})")
    return examples


def _pairs(data: Any, name: str) -> Iterator[tuple]:
    try:
        items = iter(data)
    except TypeError:
        raise DataError(f"{name}: expected rows of (text, label), got {type(data).__name__}") from None
    for number, row in enumerate(items, 1):
        if isinstance(row, Example):
            yield row.text, row.label
            continue
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != 2:
            raise DataError(f"{name} row {number}: expected a (text, label) pair, got {str(row)[:40]!r}")
        yield row[0], row[1]


def texts_from(data: Any, *, text_column: str = "text", name: str = "texts") -> list[str]:
    """Texts to classify: a sequence of strings (list, tuple, numpy array, pandas Series),
    or a DataFrame / Dataset / dict with a ``text_column``. Texts are not stripped or
    skipped: the i-th answer belongs to the i-th text."""
    if isinstance(data, (str, bytes)):
        raise DataError(f"{name}: expected a sequence of texts, got a single {type(data).__name__}")
    kind = _kind(data)
    if kind != "rows":
        values = [row[0] for row in _columns(data, kind, text_column, None, name)]
    else:
        values = data.tolist() if hasattr(data, "tolist") else list(data)
    for number, value in enumerate(values, 1):
        if not isinstance(value, str):
            raise DataError(f"{name} item {number}: {type(value).__name__} {str(value)[:40]!r} is not a string")
    return values


def splits_from(
    train: Any,
    dev: Any = None,
    test: Any = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    strict: bool = False,
) -> Splits:
    """:class:`Splits` from in-memory data, as :func:`~sparse_rational.data.load_files` makes
    them from files: without ``dev``, 10 % of ``train`` (stratified, seed 0) is the dev set;
    dev and test labels must occur in ``train``, which needs two labels."""

    def read(data: Any, name: str) -> list[Example]:
        return examples_from(data, text_column=text_column, label_column=label_column, name=name, strict=strict)

    train_examples = read(train, "train data")
    labels = {ex.label for ex in train_examples}
    if len(labels) < 2:
        only = f" ({next(iter(labels))!r})" if labels else ""
        raise DataError(f"train data: {len(labels)} label{only}; a classifier needs at least two")
    if dev is None:
        if len(train_examples) < 2:
            raise DataError("train data: too few examples to carve a dev set from; give dev data")
        train_examples, dev_examples = _carve_dev(train_examples, "train data")
    else:
        dev_examples = _check_labels(read(dev, "dev data"), "dev data", labels, "train data")
    test_examples = [] if test is None else _check_labels(read(test, "test data"), "test data", labels, "train data")
    return Splits(train_examples, dev_examples, test_examples)

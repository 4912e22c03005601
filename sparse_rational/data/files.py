"""The user's own files: TSV, JSONL and CSV parsers, :func:`load_file`, and
:func:`load_files` (with the dev set carved from the training file when none is given)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import unicodedata

import numpy as np

from sparse_rational.data.reading import Example, Splits, _decode, _error, _lines, _read_bytes, _show, _snippet
from sparse_rational.data.splitting import _allocate, _carve
from sparse_rational.warn import warn

# ----------------------------------------------------------------------------------------
# Parsers


def _empty_document(path, number: int, label: str, empty: list | None) -> None:
    """A line with a label and no text: noted in ``empty`` (skipped), or, without a list
    (``strict``), a DataError."""
    if empty is None:
        raise _error(path, number, f"empty document (label {_snippet(label)}, no text)")
    empty.append((number, label))


def _check_unicode(value: str, path, number: int, field: str) -> None:
    """Refuse a lone surrogate (JSON's ``"\\ud800"``): it is no text, and it would crash
    every later write of the word as UTF-8 (vocab.txt), after training."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        raise _error(path, number, f"not valid Unicode text: lone surrogate \\u{code:04x} in {field}") from None


def _parse_tsv(path, text: str, *, empty: list | None = None) -> list[Example]:
    """``label<TAB>text`` per line, split on the first tab; blank lines are skipped.

    A line with a label and no text is noted in ``empty`` and skipped; without ``empty``
    it is a DataError."""
    examples = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        if not tab:
            raise _error(path, number, f"no tab in line {_snippet(line)}; expected 'label<TAB>text'")
        label = label.strip()
        if not label:
            raise _error(path, number, "empty label (expected 'label<TAB>text')")
        body = body.strip()
        if not body:
            _empty_document(path, number, label, empty)
            continue
        examples.append(Example(body, label))
    return examples


def _label_value(value, path, number: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _error(path, number, f"label must be a string or an integer, got {type(value).__name__}")
    label = str(value).strip()
    if not label:
        raise _error(path, number, "empty label")
    return label


def _parse_jsonl(path, text: str, *, empty: list | None = None) -> list[Example]:
    """One JSON object per line with "text" and "label"; blank lines are skipped, lines
    without text noted in ``empty`` (as for TSV)."""
    examples = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, json.JSONDecodeError):
                reason = exc.msg
            elif isinstance(exc, RecursionError):
                reason = "too deeply nested"
            else:  # int() of thousands of digits
                reason = "a number too long to read"
            raise _error(path, number, f"not valid JSON ({reason})") from None
        if not isinstance(record, dict):
            raise _error(path, number, f'expected a JSON object with "text" and "label", got {type(record).__name__}')
        for field in ("text", "label"):
            if field not in record:
                raise _error(path, number, f'missing field "{field}"')
        body = record["text"]
        if not isinstance(body, str):
            raise _error(path, number, f'"text" must be a string, got {type(body).__name__}')
        label = _label_value(record["label"], path, number)
        _check_unicode(label, path, number, '"label"')
        _check_unicode(body, path, number, '"text"')
        body = body.strip()
        if not body:
            _empty_document(path, number, label, empty)
            continue
        examples.append(Example(body, label))
    return examples


def _parse_csv(path, text: str, *, empty: list | None = None) -> list[Example]:
    """CSV with a header naming "text" and "label" columns (any order; others ignored);
    rows without text noted in ``empty`` (as for TSV)."""
    limit = sys.maxsize
    while True:  # raise the 128 KiB default field limit as far as the platform allows
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    examples = []
    columns = None
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                names = [cell.strip().lower() for cell in row]
                if "text" not in names or "label" not in names:
                    found = ", ".join(_snippet(n, 20) for n in names[:8])
                    raise _error(path, number, f'the header must name a "text" and a "label" column (found {found})')
                columns = names.index("text"), names.index("label")
                width = len(names)
                continue
            text_col, label_col = columns
            if len(row) <= max(columns):
                raise _error(
                    path,
                    number,
                    f"{len(row)} field(s), expected at least "
                    f'{max(columns) + 1} ("text" is column {text_col + 1}, '
                    f'"label" column {label_col + 1})',
                )
            if any(cell.strip() for cell in row[width:]):  # else the label is a piece of the text
                raise _error(
                    path, number, f"{len(row)} fields, the header names {width}: a comma in a text not quoted?"
                )
            label = row[label_col].strip()
            if not label:
                raise _error(path, number, "empty label")
            body = row[text_col].strip()
            if not body:
                _empty_document(path, number, label, empty)
                continue
            examples.append(Example(body, label))
    except csv.Error as exc:
        raise _error(path, reader.line_num or 1, f"malformed CSV ({exc})") from None
    return examples


# ----------------------------------------------------------------------------------------
# The user's own files

_TSV_SUFFIXES = (".tsv", ".txt")
SUPPORTED_FILES = ".tsv / .txt / .task.* (label<TAB>text), .jsonl, .csv (text,label header)"


def load_file(path, *, strict: bool = False) -> list[Example]:
    """Read labelled examples from one file, the format chosen by its extension.

    * ``.tsv``, ``.txt``, ``*.task.*`` (FDU-MTL): ``label<TAB>text`` per line, no header,
      split on the first tab;
    * ``.jsonl``: one JSON object per line with ``"text"`` and ``"label"`` (a string or an
      integer, turned into a string);
    * ``.csv``: a header row with ``text`` and ``label`` columns, any order, extra columns
      ignored; a row with more fields than the header (a comma in a text not quoted) is refused.

    Labels and texts are stripped; blank lines are skipped. A line with a label and no
    text (real corpora such as CR and MPQA hold a few) is skipped with one warning that
    counts them and names the first; with ``strict`` it is a DataError. The file is
    UTF-8, never guessed to be another encoding (but an FDU-MTL ``*.task.*`` file is read
    as ``load_dataset("fdu:...")`` reads it, in its known encodings): a few bytes that are not (on at most 1 %
    of the lines) are read as U+FFFD with a warning naming the first line; more, or any
    with ``strict``, are a DataError naming it. Labels are kept
    verbatim; labels that differ only in case or spaces (``pos`` / ``Pos``) get a
    warning, as they are different classes. Anything else (a missing or unreadable file,
    undecodable bytes, a lone surrogate, a malformed line, an empty label, no examples at
    all) raises DataError ``FILE:LINE: ...``.
    """
    name = os.path.basename(os.fsdecode(path)).lower()
    if name.endswith(_TSV_SUFFIXES) or ".task." in name:
        parser = _parse_tsv
    elif name.endswith(".jsonl"):
        parser = _parse_jsonl
    elif name.endswith(".csv"):
        parser = _parse_csv
    else:
        raise _error(path, None, f"unknown file type; supported: {SUPPORTED_FILES}")
    # an FDU-MTL file (*.task.*) is read as the fdu: loader reads it (its MR files are cp1252)
    text = _decode(_read_bytes(path), path, lenient=".task." in name, strict=strict)
    empty: list | None = None if strict else []
    examples = parser(path, text, empty=empty)
    if not examples:
        if empty:  # nothing but lines without text: say what the lines are
            number, label = empty[0]
            raise _error(
                path, number, f"empty document (label {_snippet(label)}, no text), and no line of the file has a text"
            )
        raise _error(path, None, "no examples in the file")
    if empty:
        lines = "1 line" if len(empty) == 1 else f"{len(empty)} lines"
        first = "line" if len(empty) == 1 else "first: line"
        warn(f"{_show(path)}: skipped {lines} with a label and no text ({first} {empty[0][0]})")
    _warn_similar_labels(path, examples)
    return examples


def _label_key(label: str) -> str:
    """What a careless eye reads: case, Unicode forms, runs of spaces and invisible
    format characters (zero-width space, BOM) ignored."""
    text = unicodedata.normalize("NFKC", label)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split()).casefold()


def _similar_labels(labels) -> list[list[str]]:
    """Groups (in first-seen order) of distinct labels that differ only in case or spaces."""
    groups: dict[str, list[str]] = {}
    for label in dict.fromkeys(labels):
        groups.setdefault(_label_key(label), []).append(label)
    return [group for group in groups.values() if len(group) > 1]


def _names(labels: list[str]) -> str:
    shown = [_snippet(label, 20) for label in labels]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _warn_similar_labels(path, examples: list[Example]) -> None:
    clashes = _similar_labels(example.label for example in examples)
    for group in clashes[:3]:
        warn(f"{_show(path)}: labels {_names(group)} differ only in case or spaces; they are different classes")
    if len(clashes) > 3:
        warn(
            f"{_show(path)}: {len(clashes) - 3} more groups of labels differ only in case or "
            "spaces; they are different classes"
        )


def load_files(train, dev=None, test=None, *, strict: bool = False) -> Splits:
    """Splits from the user's files. Without ``dev``, 10% of ``train`` is carved off as the
    dev set (stratified by label, seed 0; see :func:`_carve_dev` for files that repeat
    texts); without ``test`` the test set is empty. ``strict``: as for :func:`load_file`.

    Dev and test labels must occur in the training file, and it must have two labels.
    """
    train_examples = load_file(train, strict=strict)
    labels = {example.label for example in train_examples}
    if len(labels) < 2:
        raise _error(
            train,
            None,
            f"only one label ({_snippet(next(iter(labels)), 20)}) in "
            "the training file; a classifier needs at least two",
        )
    if dev is None:
        if len(train_examples) < 2:
            raise _error(train, None, "too few examples to carve a dev set from; give a dev file")
        train_examples, dev_examples = _carve_dev(train_examples, train)
    else:
        dev_examples = _check_labels(load_file(dev, strict=strict), dev, labels, train)
    test_examples = [] if test is None else _check_labels(load_file(test, strict=strict), test, labels, train)
    return Splits(train_examples, dev_examples, test_examples)


def _check_labels(examples: list[Example], path, labels: set[str], train) -> list[Example]:
    for example in examples:
        if example.label not in labels:
            alike = [label for label in sorted(labels) if _label_key(label) == _label_key(example.label)]
            hint = f" (it has {_names(alike)}: labels differ in case or spaces)" if alike else ""
            raise _error(
                path,
                None,
                f"label {_snippet(example.label, 20)} does not occur in the training file {_show(train)}{hint}",
            )
    return examples


def _carve_dev(examples: list[Example], path) -> tuple[list[Example], list[Example]]:
    """``(train, dev)``: about 10% of the examples as the dev set, seed 0.

    First as :func:`_carve` does it (copies of a text stay together, a group that would
    overfill the dev set is passed over). When that leaves the dev set under half the size
    asked (a file of many copies of few texts gave "100 train / 0 dev"), the dev set is
    carved by distinct texts instead (:func:`_carve_distinct`), and a warning says so.
    """
    n_dev = max(1, (len(examples) + 5) // 10)
    rest, dev = _carve(examples, [n_dev], seed=0)
    if 2 * len(dev) >= n_dev:
        return rest, dev
    distinct = len({(example.label, example.text) for example in examples})
    by_text_rest, by_text_dev = _carve_distinct(examples, seed=0)
    if len(by_text_dev) > len(dev):
        rest, dev = by_text_rest, by_text_dev
    if dev:
        texts = len({example.text for example in dev})
        warn(
            f"{_show(path)}: the file repeats texts ({len(examples)} examples, {distinct} "
            f"distinct), and copies of a text stay on one side of the split: the dev set "
            f"carved from it holds {len(dev)} examples ({texts} distinct "
            f"text{'s' if texts != 1 else ''}), asked for {n_dev}; give a dev file"
        )
    else:
        warn(
            f"{_show(path)}: no dev set could be carved from the file ({len(examples)} "
            f"examples, {distinct} distinct texts, none to spare for any label); training "
            "goes on without one; give a dev file"
        )
    return rest, dev


def _carve_distinct(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """``(rest, dev)`` with about 10% of the distinct texts (at least one) in ``dev``, all
    copies of a text on one side, stratified by label over distinct texts, and every label
    keeping at least one distinct text in ``rest``. Within a label the dev set takes the
    texts with the fewest copies (random order among equals), so that a text repeated
    many times does not take most of the training data with it. Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    units: dict[str, list[list[Example]]] = {}
    for label in sorted({example.label for example in examples}):
        by_text: dict[str, list[Example]] = {}
        for example in examples:
            if example.label == label:
                by_text.setdefault(example.text, []).append(example)
        units[label] = list(by_text.values())
    spare = {label: len(groups) - 1 for label, groups in units.items() if len(groups) > 1}
    if not spare:
        return list(examples), []
    n_units = sum(len(groups) for groups in units.values())
    wanted = min(max(1, (n_units + 5) // 10), sum(spare.values()))
    share = _allocate(spare, wanted)
    rest: list[Example] = []
    dev: list[Example] = []
    for label, groups in units.items():
        order = sorted(rng.permutation(len(groups)), key=lambda i: len(groups[i]))
        take = set(order[: share.get(label, 0)])
        for i, group in enumerate(groups):
            (dev if i in take else rest).extend(group)
    return [rest[i] for i in rng.permutation(len(rest))], [dev[i] for i in rng.permutation(len(dev))]

"""Reading labelled text: the two benchmark datasets and the user's own files.

Everything that can go wrong with a file raises :class:`DataError` (a :class:`UserError`)
whose message is one line, ``FILE:LINE: what is wrong``; nothing else escapes, whatever the
bytes in the file.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparse_rational.errors import DataError, UserError
from sparse_rational.errors import one_line as _one_line
from sparse_rational.warn import warn

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

ENV_VAR = "SPARSE_RATIONAL_DATA"

#: ``amazon:<domain>`` -> folder of the Blitzer et al. (2007) release.
AMAZON_DOMAINS = {
    "books": "books",
    "dvd": "dvd",
    "electronics": "electronics",
    "kitchen": "kitchen_&_housewares",
}

#: The 16 domains of FDU-MTL (Liu, Qiu & Huang 2017), spelled as in its file names.
FDU_DOMAINS = (
    "apparel",
    "baby",
    "books",
    "camera_photo",
    "dvd",
    "electronics",
    "health_personal_care",
    "imdb",
    "kitchen_housewares",
    "magazines",
    "MR",
    "music",
    "software",
    "sports_outdoors",
    "toys_games",
    "video",
)

FDU_DEV_SIZE = 200


@dataclass(frozen=True)
class Example:
    """One labelled document. Labels are strings (any values, any number of classes)."""

    text: str
    label: str


@dataclass(frozen=True)
class Splits:
    """Train / dev / test examples. ``test`` may be empty."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]


# ----------------------------------------------------------------------------------------
# Messages, reading, decoding


# Characters that end a line for str.splitlines(), plus the other C0/C1 controls.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _show(path: str | os.PathLike) -> str:
    """The path as the user wrote it; quoted with escapes if it would break the line."""
    text = os.fspath(path)
    if isinstance(text, bytes):  # a bytes path: show it decoded, never raw
        text = text.decode("utf-8", "backslashreplace")
    return repr(text) if _LINE_BREAKING.search(text) else text


def _error(path, line: int | None, what: str) -> DataError:
    where = _show(path) if line is None else f"{_show(path)}:{line}"
    return DataError(f"{where}: {_one_line(what)}")


def _snippet(text: str, limit: int = 40) -> str:
    text = _one_line(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _read_bytes(path) -> bytes:
    try:
        if os.path.isdir(path):
            raise _error(path, None, "is a directory, not a data file")
        with open(path, "rb") as handle:
            return handle.read()
    except DataError:
        raise
    except FileNotFoundError:
        raise _error(path, None, "no such file") from None
    except PermissionError:
        raise _error(path, None, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _error(path, None, f"cannot read file ({reason})") from None


def _line_of(data: bytes | str, offset: int) -> int:
    newline = b"\n" if isinstance(data, bytes) else "\n"
    return data.count(newline, 0, offset) + 1


def _decode(data: bytes, path, *, lenient: bool) -> str:
    """Bytes -> text, choosing the encoding per file.

    UTF-8 first (a BOM is dropped). A file that is UTF-8 apart from a few corrupt bytes
    (FDU-MTL's ``dvd.task.train``) stays UTF-8 with U+FFFD for the bad bytes. Otherwise
    cp1252 (FDU-MTL's ``MR`` files), then, if ``lenient``, latin-1, which never fails;
    without ``lenient`` an undecodable file is a DataError. A NUL byte means "not a text
    file" (UTF-16, a compressed file, ...) and is a DataError either way.
    """
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _error(path, _line_of(data, nul), "contains a NUL byte: not a text file "
                     "(save it as UTF-8 text)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    replaced = data.decode("utf-8", errors="replace")
    n_bad = replaced.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    n_non_ascii = len(replaced) - len(replaced.encode("ascii", "ignore"))
    n_good = n_non_ascii - replaced.count("\ufffd")
    if n_good >= 10 * max(n_bad, 1):
        return replaced
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        pass
    if lenient:
        return data.decode("latin-1")
    raise _error(path, _line_of(data, first_bad),
                 "cannot decode the text: neither UTF-8 nor cp1252 (save it as UTF-8)")


def _lines(text: str) -> list[str]:
    """Split on "\\n" only: never on U+0085 / U+2028 (MR and imdb hold such characters
    inside lines). A trailing "\\r" is dropped from every line (Windows files)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


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
        raise _error(path, number, f"not valid Unicode text: lone surrogate \\u{code:04x} in "
                     f"{field}") from None


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
            raise _error(path, number, f"no tab in line {_snippet(line)}; expected "
                         "'label<TAB>text'")
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
        raise _error(path, number, f"label must be a string or an integer, got "
                     f"{type(value).__name__}")
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
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
            raise _error(path, number, f"not valid JSON ({reason})") from None
        if not isinstance(record, dict):
            raise _error(path, number, f"expected a JSON object with \"text\" and \"label\", "
                         f"got {type(record).__name__}")
        for field in ("text", "label"):
            if field not in record:
                raise _error(path, number, f"missing field \"{field}\"")
        body = record["text"]
        if not isinstance(body, str):
            raise _error(path, number, f"\"text\" must be a string, got {type(body).__name__}")
        label = _label_value(record["label"], path, number)
        _check_unicode(label, path, number, "\"label\"")
        _check_unicode(body, path, number, "\"text\"")
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
                    raise _error(path, number, "the header must name a \"text\" and a "
                                 f"\"label\" column (found {found})")
                columns = names.index("text"), names.index("label")
                continue
            text_col, label_col = columns
            if len(row) <= max(columns):
                raise _error(path, number, f"{len(row)} field(s), expected at least "
                             f"{max(columns) + 1} (\"text\" is column {text_col + 1}, "
                             f"\"label\" column {label_col + 1})")
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


_REVIEW_OPEN = re.compile(r"<review>", re.IGNORECASE)
_REVIEW_CLOSE = re.compile(r"</review>", re.IGNORECASE)
_REVIEW_TEXT_OPEN = re.compile(r"<review_text>", re.IGNORECASE)
_REVIEW_TEXT_CLOSE = re.compile(r"</review_text>", re.IGNORECASE)


def _blocks(text: str, opening: re.Pattern, closing: re.Pattern, pos: int = 0, end: int | None = None):
    """``(start, inner_start, inner_end)`` of each ``<tag>...</tag>`` block, as the lazy
    regex ``<tag>(.*?)</tag>`` would find them, in linear time: that regex is quadratic
    on a file with many opening tags and no closing one (a hang on a 10 MB file)."""
    end = len(text) if end is None else end
    while True:
        first = opening.search(text, pos, end)
        if first is None:
            return
        last = closing.search(text, first.end(), end)
        if last is None:  # no closing tag after this opening one: none after any later one
            return
        yield first.start(), first.end(), last.start()
        pos = last.end()


def read_reviews(path, label: str) -> list[Example]:
    """All reviews of one Blitzer et al. ``*.review`` file, each with ``label``.

    The file is pseudo-XML (no root element, bare ``&``), so it is scanned with a regex,
    not an XML parser. The text of an example is the ``<review_text>`` field only: the
    ``<title>`` is NOT included. HTML entities are unescaped and the text stripped;
    reviews whose text is empty are skipped. A file with no ``<review>`` block, or a
    block without ``<review_text>``, is a DataError.
    """
    text = _decode(_read_bytes(path), path, lenient=True)
    examples = []
    for start, inner, inner_end in _blocks(text, _REVIEW_OPEN, _REVIEW_CLOSE):
        field = next(_blocks(text, _REVIEW_TEXT_OPEN, _REVIEW_TEXT_CLOSE, inner, inner_end), None)
        if field is None:
            raise _error(path, _line_of(text, start), "<review> without <review_text>")
        body = html.unescape(text[field[1] : field[2]]).strip()
        if body:
            examples.append(Example(body, label))
    if not examples:
        raise _error(path, None, "no reviews found (expected <review>...<review_text>..."
                     "</review_text>...</review> blocks)")
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
      ignored.

    Labels and texts are stripped; blank lines are skipped. A line with a label and no
    text (real corpora such as CR and MPQA hold a few) is skipped with one warning that
    counts them and names the first; with ``strict`` it is a DataError. Labels are kept
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
    text = _decode(_read_bytes(path), path, lenient=False)
    empty: list | None = None if strict else []
    examples = parser(path, text, empty=empty)
    if not examples:
        if empty:  # nothing but lines without text: say what the lines are
            number, label = empty[0]
            raise _error(path, number, f"empty document (label {_snippet(label)}, no text), "
                         "and no line of the file has a text")
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
        warn(f"{_show(path)}: labels {_names(group)} differ only in case or spaces; they are "
             "different classes")
    if len(clashes) > 3:
        warn(f"{_show(path)}: {len(clashes) - 3} more groups of labels differ only in case or "
             "spaces; they are different classes")


def load_files(train, dev=None, test=None, *, strict: bool = False) -> Splits:
    """Splits from the user's files. Without ``dev``, 10% of ``train`` is carved off as the
    dev set (stratified by label, seed 0; see :func:`_carve_dev` for files that repeat
    texts); without ``test`` the test set is empty. ``strict``: as for :func:`load_file`.

    Dev and test labels must occur in the training file, and it must have two labels.
    """
    train_examples = load_file(train, strict=strict)
    labels = {example.label for example in train_examples}
    if len(labels) < 2:
        raise _error(train, None, f"only one label ({_snippet(next(iter(labels)), 20)}) in "
                     "the training file; a classifier needs at least two")
    if dev is None:
        if len(train_examples) < 2:
            raise _error(train, None, "too few examples to carve a dev set from; give a "
                         "dev file")
        train_examples, dev_examples = _carve_dev(train_examples, train)
    else:
        dev_examples = _check_labels(load_file(dev, strict=strict), dev, labels, train)
    test_examples = [] if test is None else \
        _check_labels(load_file(test, strict=strict), test, labels, train)
    return Splits(train_examples, dev_examples, test_examples)


def _check_labels(examples: list[Example], path, labels: set[str], train) -> list[Example]:
    for example in examples:
        if example.label not in labels:
            alike = [label for label in sorted(labels)
                     if _label_key(label) == _label_key(example.label)]
            hint = f" (it has {_names(alike)}: labels differ in case or spaces)" if alike else ""
            raise _error(path, None, f"label {_snippet(example.label, 20)} does not occur "
                         f"in the training file {_show(train)}{hint}")
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
        warn(f"{_show(path)}: the file repeats texts ({len(examples)} examples, {distinct} "
             f"distinct), and copies of a text stay on one side of the split: the dev set "
             f"carved from it holds {len(dev)} examples ({texts} distinct "
             f"text{'s' if texts != 1 else ''}), asked for {n_dev}; give a dev file (--dev)")
    else:
        warn(f"{_show(path)}: no dev set could be carved from the file ({len(examples)} "
             f"examples, {distinct} distinct texts, none to spare for any label); training "
             "goes on without one; give a dev file (--dev)")
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
        groups: dict[str, list[Example]] = {}
        for example in examples:
            if example.label == label:
                groups.setdefault(example.text, []).append(example)
        units[label] = list(groups.values())
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


# ----------------------------------------------------------------------------------------
# Stratified, deterministic splitting


def _allocate(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over the classes in proportion to ``counts`` (largest remainder)."""
    size = sum(counts.values())
    share = {label: total * n // size for label, n in counts.items()}
    remainder = {label: total * n % size for label, n in counts.items()}
    left = total - sum(share.values())
    for label in sorted(counts, key=lambda label: (-remainder[label], label))[:left]:
        share[label] += 1
    return share


def _carve(examples: list[Example], sizes: Sequence[int], seed: int) -> list[list[Example]]:
    """``[rest, part_1, ..., part_k]`` with ``len(part_i) == sizes[i]``, each stratified by
    label, deterministic in ``seed``.

    Per class (labels in sorted order), ``default_rng(seed).permutation`` orders the
    members, which then fill part_1, part_2, ... in turn; the rest is ``rest``. Copies of
    the same text are kept together (both benchmarks hold exact duplicate reviews, and a
    copy in train and one in test would leak): such a group moves as one unit and is
    passed over by a part it would overfill. Every part is finally shuffled by the same
    generator.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    counts = {label: len(members) for label, members in by_label.items()}
    shares = [_allocate(counts, size) for size in sizes]
    parts: list[list[Example]] = [[] for _ in range(len(sizes) + 1)]
    for label in sorted(by_label):
        groups: dict[str, list[Example]] = {}
        for example in by_label[label]:
            groups.setdefault(example.text, []).append(example)
        units = list(groups.values())
        room = [share[label] for share in shares]
        for i in rng.permutation(len(units)):
            unit = units[i]
            for k, free in enumerate(room):
                if len(unit) <= free:
                    parts[k + 1].extend(unit)
                    room[k] -= len(unit)
                    break
            else:
                parts[0].extend(unit)
    return [[part[i] for i in rng.permutation(len(part))] for part in parts]


# ----------------------------------------------------------------------------------------
# The benchmark datasets


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sparse-rational/data`` (``~/.cache/...`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparse-rational" / "data"


def _data_root(data_dir) -> Path:
    if data_dir is not None and os.fspath(data_dir) != "":
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_cache_dir()


def _blitzer_candidates(root: Path, folder: str) -> list[Path]:
    return [
        root / "amazon-multi-domain" / "sorted_data_acl" / folder,
        root / "sorted_data_acl" / folder,
        root / folder,
    ]


def _find_blitzer(roots: Sequence[Path], folder: str) -> Path | None:
    for root in roots:
        for candidate in _blitzer_candidates(root, folder):
            if (candidate / "positive.review").is_file() and \
                    (candidate / "negative.review").is_file():
                return candidate
    return None


def _amazon(domain: str, root: Path, split_seed: int) -> Splits:
    folder = AMAZON_DOMAINS[domain]
    cache = default_cache_dir()
    roots = [root] if root == cache else [root, cache]
    where = _find_blitzer(roots, folder)
    if where is None:
        from sparse_rational.data import download

        where = download.fetch_blitzer(cache, searched=roots) / folder
    examples = read_reviews(where / "positive.review", "positive") + read_reviews(
        where / "negative.review", "negative"
    )
    n_held_out = (len(examples) + 5) // 10  # 10% dev, 10% test: 200 + 200 of 2000
    train, dev, test = _carve(examples, [n_held_out, n_held_out], split_seed)
    return Splits(train, dev, test)


def _fdu(domain: str, root: Path, split_seed: int) -> Splits:
    folders = [root / "fdu-mtl", root, root / "mtl-dataset"]
    for folder in folders:
        train_path = folder / f"{domain}.task.train"
        test_path = folder / f"{domain}.task.test"
        if train_path.is_file() and test_path.is_file():
            break
    else:
        looked = ", ".join(_show(f) for f in folders)
        raise UserError(
            f"FDU-MTL data for '{domain}' not found: looked for {domain}.task.train and "
            f"{domain}.task.test in {looked}; FDU-MTL has no official download, so get "
            f"its mtl-dataset folder and pass --data-dir DIR or set {ENV_VAR}=DIR"
        )
    train = _read_fdu(train_path)
    test = _read_fdu(test_path)
    n_dev = FDU_DEV_SIZE if len(train) >= 2 * FDU_DEV_SIZE else max(1, len(train) // 10)
    train, dev = _carve(train, [n_dev], split_seed)
    return Splits(train, dev, test)


def _read_fdu(path: Path) -> list[Example]:
    # One line of sports_outdoors.task.train is "0<TAB>" with no text: such lines are
    # skipped rather than failing the whole domain.
    examples = _parse_tsv(path, _decode(_read_bytes(path), path, lenient=True), empty=[])
    if not examples:
        raise _error(path, None, "no examples in the file")
    return examples


def _usage() -> str:
    return (f"amazon:<domain> with domain one of {', '.join(AMAZON_DOMAINS)}, or fdu:<domain> "
            f"with domain one of {', '.join(FDU_DOMAINS)}")


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None,
                 split_seed: int = 0, *, strict: bool = False) -> Splits:
    """Load a benchmark dataset, split deterministically by ``split_seed``.

    ``amazon:<domain>`` (books, dvd, electronics, kitchen): Blitzer, Dredze & Pereira (2007),
    ``sorted_data_acl/<folder>/{positive,negative}.review``. The text of an example is the
    review text only (the title is not included); labels are "positive" / "negative". The
    2000 reviews are split 1600/200/200 (800/100/100 per label; 80/10/10 stratified for a
    domain of another size). Found under the data root as
    ``amazon-multi-domain/sorted_data_acl/<folder>``, ``sorted_data_acl/<folder>`` or
    ``<folder>``; if absent there (and in the cache), the official release is downloaded
    into the cache.

    ``fdu:<domain>`` (16 domains, e.g. books, MR, kitchen_housewares): FDU-MTL, Liu, Qiu &
    Huang (2017), ``<domain>.task.train`` / ``.task.test`` in ``fdu-mtl/``, the root itself
    or ``mtl-dataset/``; labels "0" / "1". Dev is 200 examples carved from train
    (stratified), train keeps the rest; test is the official test file. Lines with a label
    but no text are skipped.

    The data root is ``data_dir``, else ``$SPARSE_RATIONAL_DATA``, else the cache directory
    ``$XDG_CACHE_HOME/sparse-rational/data`` (``~/.cache/...``).

    ``strict`` (as for :func:`load_file`) changes nothing here: the benchmarks' examples
    are defined by the protocol above (reviews and lines without text are not examples),
    in both modes, without a warning.
    """
    kind, colon, domain = str(spec).partition(":")
    kind = kind.strip().lower()
    domain = domain.strip()
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or \
            split_seed < 0:
        raise UserError(f"split seed must be a non-negative integer, got {split_seed!r}")
    root = _data_root(data_dir)
    if colon and kind == "amazon":
        key = domain.lower()
        aliases = {folder: name for name, folder in AMAZON_DOMAINS.items()}
        key = aliases.get(key, key)
        if key in AMAZON_DOMAINS:
            return _amazon(key, root, int(split_seed))
        raise UserError(f"unknown amazon domain {domain!r}; valid: "
                        f"{', '.join('amazon:' + d for d in AMAZON_DOMAINS)}")
    if colon and kind == "fdu":
        names = {name.lower(): name for name in FDU_DOMAINS}
        if domain.lower() in names:
            return _fdu(names[domain.lower()], root, int(split_seed))
        raise UserError(f"unknown fdu domain {domain!r}; valid: "
                        f"{', '.join('fdu:' + d for d in FDU_DOMAINS)}")
    raise UserError(f"unknown dataset {_one_line(str(spec))!r}; expected {_usage()}")

"""The benchmark datasets: the Blitzer et al. (2007) Amazon reviews, the larger labelled
sample of the same corpus published with HATN (Li et al. 2018) and FDU-MTL, found under a
data root (or downloaded into the cache), split deterministically."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparse_rational.data.files import _parse_tsv
from sparse_rational.data.reading import Example, Splits, _decode, _error, _line_of, _lines, _read_bytes, _show
from sparse_rational.data.splitting import _carve
from sparse_rational.errors import UserError
from sparse_rational.errors import one_line as _one_line

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

#: ``hatn:<domain>``: the 3000 + 3000 labelled reviews per domain of Li et al. (AAAI 2018).
HATN_DOMAINS = ("books", "dvd", "electronics", "kitchen")
#: the file of each label in ``amazon-hatn/<domain>/`` (the upstream ``raw_data/<domain>/``)
HATN_FILES = {"positive": "review_positive", "negative": "review_negative"}


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
        raise _error(
            path, None, "no reviews found (expected <review>...<review_text>...</review_text>...</review> blocks)"
        )
    return examples


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
            if (candidate / "positive.review").is_file() and (candidate / "negative.review").is_file():
                return candidate
    return None


def _amazon(domain: str, root: Path, split_seed: int) -> Splits:
    folder = AMAZON_DOMAINS[domain]
    cache = default_cache_dir()
    roots = [root] if root == cache else [root, cache]
    where = _find_blitzer(roots, folder)
    if where is None:
        from sparse_rational.data import download  # lazy: start-up (urllib, ssl, tarfile)

        where = download.fetch_blitzer(cache, searched=roots) / folder
    examples = read_reviews(where / "positive.review", "positive") + read_reviews(where / "negative.review", "negative")
    n_held_out = (len(examples) + 5) // 10  # 10% dev, 10% test: 200 + 200 of 2000
    train, dev, test = _carve(examples, [n_held_out, n_held_out], split_seed)
    return Splits(train, dev, test)


def _hatn_candidates(root: Path, domain: str) -> list[Path]:
    return [root / "amazon-hatn" / domain, root / "raw_data" / domain, root / domain]


def _find_hatn(roots: Sequence[Path], domain: str) -> Path | None:
    for root in roots:
        for candidate in _hatn_candidates(root, domain):
            if all((candidate / name).is_file() for name in HATN_FILES.values()):
                return candidate
    return None


def _unescape(text: str, passes: int = 4) -> str:
    """HTML entities decoded until nothing changes (at most ``passes`` times)."""
    for _ in range(passes):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def read_hatn_lines(path, label: str) -> list[Example]:
    """The reviews of one HATN file (one ``<title>. <text>`` per line), each with
    ``label``: HTML entities decoded (``&quot;``, ``&amp;``; repeatedly, as a few kitchen
    reviews are escaped two or three times, ``&amp;amp;quot;``), whitespace stripped, empty
    lines skipped. A file without any review is a DataError."""
    text = _decode(_read_bytes(path), path, lenient=True)
    examples = [Example(body, label) for line in _lines(text) if (body := _unescape(line).strip())]
    if not examples:
        raise _error(path, None, "no reviews found (expected one review per line)")
    return examples


def _dedup(examples: list[Example]) -> list[Example]:
    """The first copy of every distinct text; a text found with two labels is dropped
    altogether (the HATN release has none, but a label would then be a coin toss)."""
    labels: dict[str, set[str]] = {}
    for example in examples:
        labels.setdefault(example.text, set()).add(example.label)
    seen: set[str] = set()
    out = []
    for example in examples:
        if len(labels[example.text]) == 1 and example.text not in seen:
            seen.add(example.text)
            out.append(example)
    return out


def _hatn(domain: str, root: Path, split_seed: int) -> Splits:
    cache = default_cache_dir()
    roots = [root] if root == cache else [root, cache]
    where = _find_hatn(roots, domain)
    if where is None:
        from sparse_rational.data import download  # lazy: start-up (urllib, ssl, tarfile)

        where = download.fetch_hatn(cache, domain, searched=roots)
    examples = _dedup([ex for label, name in HATN_FILES.items() for ex in read_hatn_lines(where / name, label)])
    n_held_out = (len(examples) + 5) // 10  # 10% dev, 10% test (stratified)
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
    return (
        f"amazon:<domain> or hatn:<domain> with domain one of {', '.join(AMAZON_DOMAINS)}, or "
        f"fdu:<domain> with domain one of {', '.join(FDU_DOMAINS)}"
    )


def load_dataset(
    spec: str, data_dir: str | os.PathLike | None = None, split_seed: int = 0, *, strict: bool = False
) -> Splits:
    """Load a benchmark dataset, split deterministically by ``split_seed``.

    ``amazon:<domain>`` (books, dvd, electronics, kitchen): Blitzer, Dredze & Pereira (2007),
    ``sorted_data_acl/<folder>/{positive,negative}.review``. The text of an example is the
    review text only (the title is not included); labels are "positive" / "negative". The
    2000 reviews are split 1600/200/200 (800/100/100 per label; 80/10/10 stratified for a
    domain of another size). Found under the data root as
    ``amazon-multi-domain/sorted_data_acl/<folder>``, ``sorted_data_acl/<folder>`` or
    ``<folder>``; if absent there (and in the cache), the official release is downloaded
    into the cache.

    ``hatn:<domain>`` (books, dvd, electronics, kitchen): the larger labelled sample of the
    same Amazon corpus published with HATN (Li et al. 2018), 3000 + 3000 reviews per domain,
    ``amazon-hatn/<domain>/review_{positive,negative}`` (or ``raw_data/<domain>/``, or
    ``<domain>/`` under the data root), one ``<title>. <text>`` per line, so the text
    includes the title. HTML entities are decoded, duplicate texts dropped (a text with
    both labels would be dropped altogether), and the rest split 80/10/10, stratified, so
    no text occurs in two splits. Absent there (and in the cache), the domain's two files
    are downloaded from the upstream repository at a fixed commit, checksum-verified.

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
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise UserError(f"split seed must be a non-negative integer, got {split_seed!r}")
    root = _data_root(data_dir)
    if colon and kind == "amazon":
        key = domain.lower()
        aliases = {folder: name for name, folder in AMAZON_DOMAINS.items()}
        key = aliases.get(key, key)
        if key in AMAZON_DOMAINS:
            return _amazon(key, root, int(split_seed))
        raise UserError(f"unknown amazon domain {domain!r}; valid: {', '.join('amazon:' + d for d in AMAZON_DOMAINS)}")
    if colon and kind == "hatn":
        key = {folder: name for name, folder in AMAZON_DOMAINS.items()}.get(domain.lower(), domain.lower())
        if key in HATN_DOMAINS:
            return _hatn(key, root, int(split_seed))
        raise UserError(f"unknown hatn domain {domain!r}; valid: {', '.join('hatn:' + d for d in HATN_DOMAINS)}")
    if colon and kind == "fdu":
        names = {name.lower(): name for name in FDU_DOMAINS}
        if domain.lower() in names:
            return _fdu(names[domain.lower()], root, int(split_seed))
        raise UserError(f"unknown fdu domain {domain!r}; valid: {', '.join('fdu:' + d for d in FDU_DOMAINS)}")
    raise UserError(f"unknown dataset {_one_line(str(spec))!r}; expected {_usage()}")

"""Tests of the data layer: the two benchmark datasets, the user's files, the tokenizer,
the download path (with urlopen monkeypatched: no network) and fuzzing of the parsers.

The real data is read in place from $SPARSE_RATIONAL_DATA, else from ../shared/data next
to the repository; tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_rational.data import (
    Example,
    Splits,
    default_cache_dir,
    download,
    load_dataset,
    load_file,
    load_files,
    read_reviews,
    tokenize,
)
from sparse_rational.errors import DataError, UserError

DATA = Path(os.environ.get("SPARSE_RATIONAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


BLITZER = _first_dir(DATA / "amazon-multi-domain" / "sorted_data_acl", DATA / "sorted_data_acl")
FDU = next(
    (d for d in (DATA / "fdu-mtl", DATA, DATA / "mtl-dataset") if (d / "books.task.train").is_file()),
    None,
)
needs_blitzer = pytest.mark.skipif(
    BLITZER is None,
    reason=f"Blitzer sorted_data_acl not found under {DATA}; set SPARSE_RATIONAL_DATA",
)
needs_fdu = pytest.mark.skipif(FDU is None, reason=f"FDU-MTL files not found under {DATA}; set SPARSE_RATIONAL_DATA")

DOMAINS = {"books": "books", "dvd": "dvd", "electronics": "electronics", "kitchen": "kitchen_&_housewares"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reaches the network or the real cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("SPARSE_RATIONAL_DATA", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _partition_ok(splits: Splits, everything: list[Example]) -> bool:
    parts = collections.Counter(splits.train) + collections.Counter(splits.dev) + collections.Counter(splits.test)
    return parts == collections.Counter(everything)


def _assert_one_line_error(exc: BaseException, *needles: str) -> None:
    message = str(exc)
    assert message.splitlines() == [message], f"message is not one line: {message!r}"
    assert message.strip() == message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# ------------------------------------------------------------------------------------------
# Blitzer et al. (Amazon multi-domain)


@needs_blitzer
@pytest.mark.parametrize("folder", sorted(DOMAINS.values()))
def test_blitzer_files_hold_1000_reviews_each(folder):
    for label in ("positive", "negative"):
        reviews = read_reviews(BLITZER / folder / f"{label}.review", label)
        assert len(reviews) == 1000
        assert {r.label for r in reviews} == {label}
        assert all(r.text and r.text == r.text.strip() for r in reviews)
        assert not any("<review_text>" in r.text or "&amp;" in r.text for r in reviews)
        # One kitchen review is double-escaped in the release ("&amp;quot;"); none else.
        assert sum("&quot;" in r.text for r in reviews) <= 1


@needs_blitzer
def test_blitzer_text_is_the_review_text_without_title_and_unescaped():
    first = read_reviews(BLITZER / "books" / "positive.review", "positive")[0]
    assert first.text.startswith("Sphere by Michael Crichton is an excellant novel.")
    assert "One of the best Crichton novels" not in first.text  # the <title>
    texts = [r.text for r in read_reviews(BLITZER / "kitchen_&_housewares" / "negative.review", "negative")]
    assert any("&" in t for t in texts)  # bare & and &amp; both come out as "&"


@needs_blitzer
@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_amazon_splits_are_1600_200_200_stratified_partition(domain):
    splits = load_dataset(f"amazon:{domain}", data_dir=DATA, split_seed=0)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (1600, 200, 200)
    for part, size in ((splits.train, 800), (splits.dev, 100), (splits.test, 100)):
        assert collections.Counter(e.label for e in part) == {"positive": size, "negative": size}
    folder = BLITZER / DOMAINS[domain]
    everything = read_reviews(folder / "positive.review", "positive") + read_reviews(
        folder / "negative.review", "negative"
    )
    assert _partition_ok(splits, everything)


@needs_blitzer
def test_amazon_splits_are_deterministic_in_the_seed_and_do_not_overlap():
    a = load_dataset("amazon:electronics", data_dir=DATA, split_seed=3)
    b = load_dataset("amazon:electronics", data_dir=DATA, split_seed=3)
    c = load_dataset("amazon:electronics", data_dir=DATA, split_seed=4)
    assert a == b
    assert set(a.test) != set(c.test) and set(a.dev) != set(c.dev)
    assert not set(a.train) & set(a.dev)
    assert not set(a.train) & set(a.test)
    assert not set(a.dev) & set(a.test)
    # The training set is shuffled, not positives-then-negatives.
    assert len({e.label for e in a.train[:50]}) == 2


@needs_blitzer
@pytest.mark.parametrize("layout", ["root", "amazon-multi-domain", "sorted_data_acl", "env"])
def test_amazon_root_layouts(layout, monkeypatch):
    if layout == "env":
        monkeypatch.setenv("SPARSE_RATIONAL_DATA", str(BLITZER.parent))
        data_dir = None
    else:
        data_dir = {"root": DATA, "amazon-multi-domain": BLITZER.parent, "sorted_data_acl": BLITZER}[layout]
    splits = load_dataset("amazon:kitchen", data_dir=data_dir)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (1600, 200, 200)
    assert load_dataset("amazon:kitchen_&_housewares", data_dir=data_dir) == splits


def test_unknown_dataset_or_domain_lists_the_valid_ones(tmp_path):
    for spec, needles in [
        ("yelp:books", ["yelp", "amazon:<domain>", "kitchen", "fdu:<domain>", "MR"]),
        ("amazon", ["amazon:<domain>", "electronics"]),
        ("amazon:toys", ["toys", "amazon:books", "amazon:kitchen"]),
        ("fdu:kitchen", ["kitchen", "fdu:kitchen_housewares", "fdu:MR"]),
        ("fdu:x\ny", ["fdu:books"]),
    ]:
        with pytest.raises(UserError) as info:
            load_dataset(spec, data_dir=tmp_path)
        _assert_one_line_error(info.value, *needles)
    with pytest.raises(UserError) as info:
        load_dataset("fdu:books", data_dir=tmp_path, split_seed=-1)
    _assert_one_line_error(info.value, "seed")


# ------------------------------------------------------------------------------------------
# FDU-MTL


@needs_fdu
@pytest.mark.parametrize("domain", ["books", "kitchen_housewares", "MR"])
def test_fdu_line_counts_and_dev_carving(domain):
    train = load_file(FDU / f"{domain}.task.train")
    test = load_file(FDU / f"{domain}.task.test")
    assert (len(train), len(test)) == (1600, 400)
    assert {e.label for e in train} == {e.label for e in test} == {"0", "1"}
    splits = load_dataset(f"fdu:{domain}", data_dir=DATA, split_seed=0)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (1400, 200, 400)
    assert splits.test == test  # the official test file, in file order
    assert _partition_ok(Splits(splits.train, splits.dev, []), train)
    counts = collections.Counter(e.label for e in train)
    dev_counts = collections.Counter(e.label for e in splits.dev)
    for label, n in counts.items():  # stratified: proportional to within one example
        assert abs(dev_counts[label] - 200 * n / len(train)) < 1
    assert load_dataset(f"fdu:{domain}", data_dir=DATA, split_seed=0) == splits
    other = load_dataset(f"fdu:{domain}", data_dir=DATA, split_seed=1)
    assert set(other.dev) != set(splits.dev)
    assert not set(splits.train) & set(splits.dev)


@needs_fdu
def test_fdu_domain_names_are_case_insensitive_and_layouts_work(monkeypatch):
    a = load_dataset("fdu:MR", data_dir=DATA)
    assert load_dataset("fdu:mr", data_dir=FDU) == a
    monkeypatch.setenv("SPARSE_RATIONAL_DATA", str(FDU))
    assert load_dataset("fdu:Mr") == a


@needs_fdu
def test_mr_nel_bytes_do_not_split_lines():
    raw = (FDU / "MR.task.train").read_bytes()
    assert b"\x85" in raw  # cp1252 "..." (latin-1 NEL) inside lines
    assert len(raw.decode("latin-1").splitlines()) > 1600  # what str.splitlines would do
    examples = load_file(FDU / "MR.task.train")
    assert len(examples) == 1600
    assert any("\u2026" in e.text for e in examples)  # decoded as cp1252
    assert not any("\x85" in e.text or "\u2028" in e.text for e in examples)


@needs_fdu
def test_imdb_utf8_nel_characters_do_not_split_lines():
    text = (FDU / "imdb.task.train").read_text(encoding="utf-8")
    assert "\x85" in text and len(text.splitlines()) > 1600
    examples = load_file(FDU / "imdb.task.train")
    assert len(examples) == 1600
    assert any("\x85" in e.text for e in examples)


@needs_fdu
def test_fdu_dvd_mostly_utf8_file_is_not_mojibake():
    # One line of dvd.task.train holds two corrupt bytes; the rest is UTF-8 (é, ó, ...).
    examples = load_file(FDU / "dvd.task.train")
    assert len(examples) == 1600
    texts = " ".join(e.text for e in examples)
    assert "\u00e9" in texts and "\u00c3" not in texts


@needs_fdu
def test_fdu_line_without_text_is_skipped_by_the_dataset_but_an_error_in_a_strict_user_file():
    path = FDU / "sports_outdoors.task.train"
    with pytest.raises(DataError) as info:
        load_file(path, strict=True)
    _assert_one_line_error(info.value, f"{path}:1121:", "empty document")
    splits = load_dataset("fdu:sports_outdoors", data_dir=DATA)
    assert (len(splits.train), len(splits.dev)) == (1399, 200)


def test_fdu_missing_says_where_it_looked(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("fdu:books", data_dir=tmp_path)
    _assert_one_line_error(
        info.value, "books.task.train", str(tmp_path / "fdu-mtl"), "--data-dir", "SPARSE_RATIONAL_DATA"
    )


def test_fdu_bad_line_is_a_data_error_with_file_and_line(tmp_path):
    folder = tmp_path / "fdu-mtl"
    folder.mkdir()
    (folder / "books.task.train").write_bytes(b"1\tgood\n0\tfine\nno tab here\n")
    (folder / "books.task.test").write_bytes(b"1\tgood\n\t no label\n")
    with pytest.raises(DataError) as info:
        load_dataset("fdu:books", data_dir=tmp_path)
    _assert_one_line_error(info.value, "books.task.train:3:", "tab")
    (folder / "books.task.train").write_bytes(b"1\tgood\n0\tfine\n")
    with pytest.raises(DataError) as info:
        load_dataset("fdu:books", data_dir=tmp_path)
    _assert_one_line_error(info.value, "books.task.test:2:", "empty label")


# ------------------------------------------------------------------------------------------
# The user's own files

THREE_CLASSES = [
    Example("Great food , friendly staff", "pos"),
    Example('It was OK,\tI guess; "fine"', "neutral"),
    Example("terrible service", "neg"),
    Example("more \u00e9 unicode \u2028 and NEL \x85 inside", "neutral"),
    Example("again, lovely", "pos"),
]


def test_tsv_round_trip(tmp_path):
    path = tmp_path / "reviews.tsv"
    lines = [f"{e.label}\t{e.text}" for e in THREE_CLASSES]
    path.write_bytes(("\ufeff" + "\r\n".join(lines[:2]) + "\r\n\n  \n" + "\n".join(lines[2:]) + "\n").encode("utf-8"))
    assert load_file(path) == THREE_CLASSES  # split on the FIRST tab; BOM, CRLF, blanks ok
    task = tmp_path / "x.task.dev"
    task.write_text("1\tfoo\n0\tbar", encoding="utf-8")
    assert load_file(task) == [Example("foo", "1"), Example("bar", "0")]


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "reviews.jsonl"
    records = [{"text": e.text, "label": e.label, "extra": [1, 2]} for e in THREE_CLASSES]
    records.append({"label": 2, "text": "an integer label"})
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    assert load_file(path) == THREE_CLASSES + [Example("an integer label", "2")]


def test_csv_round_trip(tmp_path):
    import csv

    path = tmp_path / "reviews.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Label", "text", "note"])
        for i, e in enumerate(THREE_CLASSES):
            writer.writerow([i, e.label, e.text, "multi\nline, note"])
        writer.writerow([99, "neg", "x" * 300_000, ""])  # beyond csv's default field limit
    examples = load_file(path)
    assert examples[:-1] == THREE_CLASSES
    assert examples[-1] == Example("x" * 300_000, "neg")


def test_load_files_carves_a_stratified_dev_set(tmp_path):
    train = tmp_path / "train.tsv"
    rows = [(lab, f"document {lab} {i}") for lab in ("a", "b", "c") for i in range(40)]
    rows += [("a", f"extra {i}") for i in range(30)]
    train.write_text("".join(f"{lab}\t{t}\n" for lab, t in rows), encoding="utf-8")
    splits = load_files(train)
    assert (len(splits.train), len(splits.dev), splits.test) == (135, 15, [])
    assert collections.Counter(e.label for e in splits.dev) == {"a": 7, "b": 4, "c": 4}
    assert _partition_ok(splits, load_file(train))
    assert load_files(train) == splits  # deterministic (seed 0)

    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"text": "x", "label": "b"}\n', encoding="utf-8")
    test = tmp_path / "test.csv"
    test.write_text("text,label\ny,c\n", encoding="utf-8")
    splits = load_files(train, dev, test)
    assert len(splits.train) == 150
    assert splits.dev == [Example("x", "b")] and splits.test == [Example("y", "c")]

    dev.write_text('{"text": "x", "label": "zzz"}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_files(train, dev)
    _assert_one_line_error(info.value, str(dev), "zzz")

    # Copies of one text stay together: never one copy in train and another in dev.
    dups = tmp_path / "dups.tsv"
    dups.write_text(
        "".join(f"{'ab'[i % 2]}\tsame text {i % 6}\n" for i in range(60))
        + "".join(f"{'ab'[i % 2]}\tunique {i}\n" for i in range(40)),
        encoding="utf-8",
    )
    splits = load_files(dups)
    assert (len(splits.train), len(splits.dev)) == (90, 10)
    assert not {e.text for e in splits.train} & {e.text for e in splits.dev}

    one = tmp_path / "one.tsv"
    one.write_text("a\tx\na\ty\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_files(one)
    _assert_one_line_error(info.value, str(one), "one label")


BAD_FILES = [
    # name, content, line (None: no line number), words in the message
    ("no_tab.tsv", b"pos\tfine\npos fine no tab\n", 2, "tab"),
    ("empty_label.tsv", b"pos\tok\n\n  \tno label\n", 3, "empty label"),
    ("empty_doc.tsv", b"pos\t   \n", 1, "empty document"),
    ("bad.jsonl", b'{"text": "a", "label": 1}\n{"text": "a", label: 1}\n', 2, "JSON"),
    ("list.jsonl", b'["a", 1]\n', 1, "object"),
    ("no_text.jsonl", b'\n{"label": "x"}\n', 2, '"text"'),
    ("no_label.jsonl", b'{"text": "x"}\n', 1, '"label"'),
    ("null_label.jsonl", b'{"text": "x", "label": null}\n', 1, "label"),
    ("float_label.jsonl", b'{"text": "x", "label": 1.5}\n', 1, "label"),
    ("blank_label.jsonl", b'{"text": "x", "label": " "}\n', 1, "empty label"),
    ("num_text.jsonl", b'{"text": 3, "label": "x"}\n', 1, '"text"'),
    ("empty_text.jsonl", b'{"text": " \\n ", "label": "x"}\n', 1, "empty document"),
    ("deep.jsonl", b"[" * 100_000 + b"\n", 1, "JSON"),
    ("header.csv", b"body,label\nx,1\n", 1, "header"),
    ("short.csv", b"label,text\n1,ok\n2\n", 3, "field"),
    ("comma.csv", b"text,label\nok,1\ngreat, really,1\n", 3, "3 fields, the header names 2"),  # not label ' really'
    ("empty_label.csv", b"text,label\nok,1\nok,\n", 3, "empty label"),
    ("empty_doc.csv", b'text,label\n"\n",1\n', 3, "empty document"),
    ("quote.csv", b'text,label\n"ok"x,1\n', 2, "CSV"),
    ("empty.tsv", b"", None, "no examples"),
    ("blank.jsonl", b"\n \n\t\n", None, "no examples"),
    ("header_only.csv", b"text,label\n", None, "no examples"),
    ("data.parquet", b"PAR1", None, ".jsonl"),
    ("undecodable.tsv", b"pos\tfine\nneg\tbad \x81\x8d\x8f\x90\x9d bytes\n", 2, "decode"),
    ("nul.tsv", b"pos\tfine\nneg\tnul \x00 byte\n", 2, "NUL"),
    ("utf16.jsonl", '{"text": "x", "label": 1}\n'.encode("utf-16"), 1, "NUL"),
]


@pytest.mark.parametrize("name,content,line,words", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_give_one_line_data_errors(tmp_path, name, content, line, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_file(path)
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    _assert_one_line_error(info.value, where, words)


def test_unreadable_paths_give_one_line_data_errors(tmp_path):
    with pytest.raises(DataError) as info:
        load_file(tmp_path / "missing.tsv")
    _assert_one_line_error(info.value, f"{tmp_path / 'missing.tsv'}:", "no such file")
    folder = tmp_path / "folder.tsv"
    folder.mkdir()
    with pytest.raises(DataError) as info:
        load_file(folder)
    _assert_one_line_error(info.value, str(folder), "directory")
    odd = tmp_path / "new\nline.tsv"
    odd.write_bytes(b"no tab\n")
    with pytest.raises(DataError) as info:
        load_file(odd)
    _assert_one_line_error(info.value, "line.tsv", ":1:")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked.tsv"
        locked.write_bytes(b"a\tb\n")
        locked.chmod(0)
        with pytest.raises(DataError) as info:
            load_file(locked)
        _assert_one_line_error(info.value, str(locked), "permission")


def test_review_file_errors(tmp_path):
    empty = tmp_path / "positive.review"
    empty.write_text("<title>no reviews at all</title>\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_reviews(empty, "positive")
    _assert_one_line_error(info.value, str(empty), "no reviews")
    broken = tmp_path / "negative.review"
    broken.write_text(
        "<review>\n<review_text>\nBad &amp; sad & <b>bold</b>\n</review_text>\n"
        "</review>\n<review>\n<title>t</title>\n</review>\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        read_reviews(broken, "negative")
    _assert_one_line_error(info.value, f"{broken}:6:", "review_text")
    broken.write_text(
        "<review>\n<review_text>\nBad &amp; sad & <b>bold</b>\n</review_text>\n</review>\n", encoding="utf-8"
    )
    assert read_reviews(broken, "negative") == [Example("Bad & sad & <b>bold</b>", "negative")]


# ------------------------------------------------------------------------------------------
# Tokenizer


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("Don't stop!", ["do", "n't", "stop", "!"]),
        ("It's great, isn't it?", ["it", "'s", "great", ",", "is", "n't", "it", "?"]),
        ("I can't, won't; they'll & we'd", ["i", "ca", "n't", ",", "wo", "n't", ";", "they", "'ll", "&", "we", "'d"]),
        ("Tom &amp; Jerry &quot;rock&quot;", ["tom", "&", "jerry", '"', "rock", '"']),
        (
            "It cost $1,000.50 in the U.S. (e.g. NYC)...",
            ["it", "cost", "$", "1,000.50", "in", "the", "u.s.", "(", "e.g.", "nyc", ")", "..."],
        ),
        (
            "A well-known 5-star o'clock item -- Mr. Smith's",
            ["a", "well-known", "5-star", "o'clock", "item", "--", "mr.", "smith", "'s"],
        ),
        (
            "\u201cQuoted\u201d and \u2018single\u2019 don\u2019t",
            ['"', "quoted", '"', "and", "'", "single", "'", "do", "n't"],
        ),
        ("caf\u00e9 cafe\u0301 na\x1ave Guzm\ufffdn", ["caf\u00e9", "caf\u00e9", "na", "ve", "guzm", "n"]),
        ("", []),
    ],
)
def test_tokenize_examples(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_keeps_ptb_tokenized_text_unchanged():
    text = (
        "i am an avid reader of books , and i feel that larkin 's `` the book of "
        "revelation '' is the best . mr. larkin does n't disappoint ... 5/5 -- 1,000 "
        "u.s. fans ca n't be wrong ; well-known ( really ) ! ? $ 3.50 it 's i 'm we 're"
    )
    assert tokenize(text) == text.split()


_TEXT_PIECES = st.sampled_from(
    list("abnstdmrelx019 '`\".,-/:;!?*&()$%\u2019\u2026\u00e9\u0301\u00a0\x85\u2028\t\n")
    + ["n't", "'s", "mr.", "u.s.", "&amp;", "http://x.com/a", ".com", "--", "..."]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_TEXT_PIECES, max_size=30).map("".join))
def test_tokenize_is_idempotent_and_tokens_have_no_spaces(text):
    tokens = tokenize(text)
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    assert tokenize(" ".join(tokens)) == tokens


@needs_fdu
@pytest.mark.parametrize("domain", ["books", "kitchen_housewares"])
def test_tokenize_agrees_with_fdu_tokens(domain):
    examples = load_file(FDU / f"{domain}.task.test")
    kept = total = 0
    for e in examples:
        given_tokens = collections.Counter(e.text.split())
        kept += sum((given_tokens & collections.Counter(tokenize(e.text))).values())
        total += sum(given_tokens.values())
    assert kept / total > 0.99


@needs_blitzer
def test_tokenize_is_fast():
    texts = [r.text for r in read_reviews(BLITZER / "dvd" / "positive.review", "positive")]
    texts += [r.text for r in read_reviews(BLITZER / "dvd" / "negative.review", "negative")]
    assert len(texts) == 2000
    start = time.perf_counter()
    n_tokens = sum(len(tokenize(t)) for t in texts)
    assert time.perf_counter() - start < 1.0
    assert n_tokens > 200_000


# ------------------------------------------------------------------------------------------
# Download (urlopen monkeypatched; nothing leaves the machine)


class _Response(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _serve(monkeypatch, payload=None, error=None):
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        if error is not None:
            raise error
        return _Response(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


@pytest.fixture(scope="module")
def release_tarball():
    if BLITZER is None:
        pytest.skip(f"Blitzer sorted_data_acl not found under {DATA}; set SPARSE_RATIONAL_DATA")
    files = {f"sorted_data_acl/{name}": (BLITZER / name).read_bytes() for name in download.BLITZER_MD5}
    files["sorted_data_acl/books/unlabeled.review"] = b"<review></review>"
    files["sorted_data_acl/../../evil/positive.review"] = b"evil"
    files["summary.txt"] = b"readme"
    return _tarball(files)


def _leftovers(cache: Path) -> list[str]:
    parent = cache / "amazon-multi-domain"
    return sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []


def test_download_fetches_verifies_and_installs_atomically(monkeypatch, tmp_path, release_tarball):
    calls = _serve(monkeypatch, release_tarball)
    cache = default_cache_dir()
    assert cache == tmp_path / "xdg-cache" / "sparse-rational" / "data"
    splits = load_dataset("amazon:dvd", data_dir=tmp_path / "nothing-here", split_seed=0)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (1600, 200, 200)
    assert calls == [(download.BLITZER_URL, download.TIMEOUT_S)]
    installed = cache / "amazon-multi-domain" / "sorted_data_acl"
    assert _leftovers(cache) == ["sorted_data_acl"]  # no temporary directory left
    assert sorted(str(p.relative_to(installed)) for p in installed.rglob("*.review")) == sorted(download.BLITZER_MD5)
    for name, md5 in download.BLITZER_MD5.items():
        assert hashlib.md5((installed / name).read_bytes()).hexdigest() == md5
    assert not (tmp_path / "evil").exists()
    # Found in the cache next time: no second download; same splits as the shared copy.
    assert load_dataset("amazon:dvd", split_seed=0) == splits
    assert load_dataset("amazon:books", data_dir=tmp_path / "elsewhere") == load_dataset("amazon:books", data_dir=DATA)
    assert len(calls) == 1


def test_download_bad_checksum_is_a_user_error_and_installs_nothing(monkeypatch):
    fake = {
        f"sorted_data_acl/{name}": b"<review><review_text>x</review_text></review>" for name in download.BLITZER_MD5
    }
    _serve(monkeypatch, _tarball(fake))
    with pytest.raises(UserError) as info:
        load_dataset("amazon:books")
    _assert_one_line_error(info.value, "checksum", download.BLITZER_URL, "--data-dir", "SPARSE_RATIONAL_DATA")
    assert _leftovers(default_cache_dir()) == []


def test_download_incomplete_archive_is_a_user_error(monkeypatch):
    _serve(monkeypatch, _tarball({"sorted_data_acl/books/positive.review": b"x"}))
    with pytest.raises(UserError) as info:
        load_dataset("amazon:books")
    _assert_one_line_error(info.value, "lacks", "--data-dir")
    assert _leftovers(default_cache_dir()) == []


@pytest.mark.parametrize(
    "error,payload",
    [
        (urllib.error.URLError("[Errno -2] Name or\nservice not known"), None),
        (TimeoutError("timed out"), None),
        (None, b"<html>not a tarball</html>"),
        (None, _tarball({"a": b"b"})[:40]),
    ],
)
def test_download_failures_are_one_line_user_errors(monkeypatch, tmp_path, error, payload):
    _serve(monkeypatch, payload, error)
    with pytest.raises(UserError) as info:
        load_dataset("amazon:electronics", data_dir=tmp_path)
    _assert_one_line_error(info.value, download.BLITZER_URL, str(tmp_path), "--data-dir", "SPARSE_RATIONAL_DATA")
    assert _leftovers(default_cache_dir()) == []


# ------------------------------------------------------------------------------------------
# Fuzzing: any bytes give examples or a DataError, never another exception

_FRAGMENTS = [
    b"\t",
    b"\n",
    b"\r\n",
    b",",
    b'"',
    b"{",
    b"}",
    b'"text"',
    b'"label"',
    b":",
    b"1",
    b"pos",
    b"text,label\n",
    b"<review>",
    b"</review>",
    b"<review_text>",
    b"</review_text>",
    b"&amp;",
    b"&",
    b"\x85",
    b"\xe2\x80\xa8",
    b"\xff",
    b"\x00",
    b"\xc3\xa9",
    b" ",
    b"word",
    b"[",
    b"]",
    b"null",
]
_CONTENT = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(_FRAGMENTS) | st.binary(max_size=8), max_size=80).map(b"".join),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".csv", ".review"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_CONTENT)
def test_fuzz_parsers_raise_only_data_errors(fuzz_dir, suffix, content):
    path = fuzz_dir / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        examples = read_reviews(path, "x") if suffix == ".review" else load_file(path)
    except DataError as exc:
        _assert_one_line_error(exc, str(path))
    else:
        assert examples and all(isinstance(e, Example) and e.text.strip() and e.label for e in examples)

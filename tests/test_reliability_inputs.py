"""Reliability: fuzzing every loader (TSV, JSONL, CSV, Blitzer reviews, FDU-MTL, GloVe text
and gzip). Any bytes give examples or a one-line DataError; valid files parse exactly; a
10 MB line is read or refused quickly.

Split by topic from the former tests/test_reliability.py; shared helpers:
test_reliability_helpers.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_helpers import one_line, one_torch_thread

from sparse_rational.data import Example, Splits, load_dataset, read_reviews
from sparse_rational.data import load_file as load_data_file
from sparse_rational.embeddings.static import load_word_vectors
from sparse_rational.errors import DataError, UserError

_one_thread = pytest.fixture(autouse=True, scope="module", name="_one_thread")(one_torch_thread)


# ------------------------------------------------------------------------------------------
# 3. fuzzing every loader

_VALUE = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 5),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
)
_FIELDS = st.dictionaries(st.sampled_from(["text", "label", "extra", "Text"]), _VALUE, max_size=4)
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"]


def _render(fmt: str, records: list[dict]) -> str:
    lines = []
    if fmt in ("tsv", "fdu"):
        for r in records:
            parts = [str(r[k]) for k in ("label", "text") if k in r]
            lines.append("\t".join(parts) + ("\t" + str(r["extra"]) if "extra" in r else ""))
    elif fmt == "jsonl":
        for r in records:
            lines.append(json.dumps(r) if "extra" not in r or r["extra"] is None else json.dumps(r.get("text")))
    elif fmt == "csv":
        keys = sorted({k for r in records for k in r}) or ["text"]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(keys)
        for r in records:
            w.writerow([r.get(k, "") for k in keys])
        return buf.getvalue()
    elif fmt == "review":
        for r in records:
            body = f"<review_text>\n{r['text']}\n</review_text>" if "text" in r else ""
            lines.append(
                f"<review>\n<title>{r.get('label', '')}</title>\n{body}\n" + ("</review>" if "extra" not in r else "")
            )
    elif fmt == "glove":
        for r in records:
            nums = [str(r.get(k, "nan")) for k in ("text", "label", "extra")]
            lines.append(" ".join([f"w{len(lines)}", *nums[: 1 + len(r) % 3]]))
    return "\n".join(lines) + "\n"


@st.composite
def fuzz_files(draw, fmt):
    text = _render(fmt, draw(st.lists(_FIELDS, max_size=6)))
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 2))):  # empty lines, stray characters, Windows endings
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\r", "\t", "\x00", "\u2028"])))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    data = text.encode(draw(st.sampled_from(_ENCODINGS)), errors="replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


def _load(fmt: str, folder: Path, data: bytes):
    """Write ``data`` as a file of format ``fmt`` and read it with the matching loader."""
    if fmt == "fdu":
        (folder / "books.task.test").write_text("1\tgood stuff\n0\tbad stuff\n")
        path = folder / "books.task.train"
        path.write_bytes(data)
        return path, lambda: load_dataset("fdu:books", data_dir=folder)
    if fmt == "review":
        path = folder / "x.review"
        path.write_bytes(data)
        return path, lambda: read_reviews(path, "positive")
    if fmt in ("glove", "glove.gz"):
        path = folder / ("v.txt" if fmt == "glove" else "v.txt.gz")
        path.write_bytes(data if fmt == "glove" else gzip.compress(data))
        return path, lambda: load_word_vectors(str(path))
    path = folder / f"x.{fmt}"
    path.write_bytes(data)
    return path, lambda: load_data_file(path)


def _check_loaded(fmt: str, result) -> None:
    if fmt.startswith("glove"):
        assert result.vectors.shape == (len(result.words), result.dim) and result.dim >= 1
        assert np.isfinite(result.vectors).all()
        return
    examples = (
        [e for part in (result.train, result.dev, result.test) for e in part] if isinstance(result, Splits) else result
    )
    assert examples or isinstance(result, Splits)
    for e in examples:
        assert isinstance(e, Example) and e.text and e.text == e.text.strip() and e.label == e.label.strip()


def _load_or_one_line_error(fmt: str, folder: Path, data: bytes) -> None:
    path, call = _load(fmt, folder, data)
    start = time.monotonic()
    try:
        result = call()
    except (DataError, UserError) as exc:
        one_line(exc, str(path))
    else:
        _check_loaded(fmt, result)
    assert time.monotonic() - start < 10, "no hang"


FORMATS = ["tsv", "jsonl", "csv", "review", "fdu", "glove", "glove.gz"]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_loaders_with_fields_encodings_and_stray_bytes(fmt, tmp_path_factory, data):
    content = data.draw(st.one_of(fuzz_files("glove" if fmt.startswith("glove") else fmt), st.binary(max_size=400)))
    _load_or_one_line_error(fmt, tmp_path_factory.mktemp(fmt.replace(".", "")), content)


_CLEAN = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff\x85"),
    min_size=1,
    max_size=15,
).filter(lambda s: s.strip())


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "csv"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_CLEAN, _CLEAN), min_size=1, max_size=6), crlf=st.booleans())
def test_valid_files_parse_exactly(fmt, tmp_path_factory, rows, crlf):
    """Any labels and texts (but tabs in TSV labels) come back exactly, stripped."""
    if fmt == "tsv":
        rows = [(lab.replace("\t", " "), txt) for lab, txt in rows]
        text = "".join(f"{lab}\t{txt}\n" for lab, txt in rows)
    elif fmt == "jsonl":
        text = "".join(json.dumps({"label": lab, "text": txt, "id": i}) + "\n" for i, (lab, txt) in enumerate(rows))
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "label", "text"])
        w.writerows([i, lab, txt] for i, (lab, txt) in enumerate(rows))
        text = buf.getvalue()
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path_factory.mktemp("clean") / f"x.{fmt}"
    path.write_bytes(text.encode("utf-8"))
    got = load_data_file(path)
    assert [(e.label, e.text) for e in got] == [(lab.strip(), txt.strip()) for lab, txt in rows]


TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_10mb_line_is_read_or_refused_quickly(fmt, tmp_path):
    words = ("good " * (TEN_MB // 5)).strip()
    content = {
        "tsv": f"pos\t{words}\nneg\tbad\n",
        "fdu": f"1\t{words}\n0\tbad\n",
        "jsonl": json.dumps({"text": words, "label": "pos"}) + "\n",
        "csv": f"text,label\n{words},pos\n",
        "review": f"<review><review_text>{words}</review_text></review>",
        "glove": "w " + " ".join(["0.5"] * (TEN_MB // 4)) + "\n",
        "glove.gz": "w" + " 1" * (TEN_MB // 2) + "\n",
    }[fmt].encode()
    _load_or_one_line_error(fmt, tmp_path, content)
    # and 10 MB of markup that made the review regex quadratic, or no newline at all
    _load_or_one_line_error(fmt, tmp_path, b"<review>" * (TEN_MB // 8))
    _load_or_one_line_error(fmt, tmp_path, b"\x00" + b"a" * TEN_MB)


def test_glove_rejects_non_finite_vectors_and_absurd_headers(tmp_path):
    for text, line in (
        ("a 0.1 0.2\nb nan 0.3\n", ":2"),
        ("a 1e39 0\n", ":1"),
        ("3 0\na\n", ":1"),
        ("a 0.1\nb 0.1 0.2 x\n", ":2"),
        ("a\tb\n", ":1"),
    ):
        path = tmp_path / "v.txt"
        path.write_text(text)
        try:
            vec = load_word_vectors(str(path))
        except DataError as exc:
            one_line(exc, f"{path}{line}")
        else:  # "a 0.1 / b 0.1 0.2 x": b is the word "b 0.1" ... only if it parses
            assert np.isfinite(vec.vectors).all()


def test_export_json_has_no_loader():
    """The JSON export is write-only (read by numpy code of the user's, see README); there is
    no loader to fuzz."""
    import sparse_rational.export as export

    assert not [n for n in dir(export) if n.startswith(("load", "read", "import"))]

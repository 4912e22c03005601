"""Data in memory: pairs, pandas DataFrames, Hugging Face Datasets and dicts of columns give
the same model as the equivalent TSV files; bad rows get one-line errors naming the row."""

import numpy as np
import pytest
from conftest import balanced, write_tsv

from sparse_rational.config import ModelOptions, RunOptions, TrainConfig
from sparse_rational.data import Example, examples_from, load_files, splits_from, texts_from
from sparse_rational.errors import DataError
from sparse_rational.pipeline import train_text_classifier

OPTIONS = RunOptions("glove-6b-50d", ModelOptions(patterns="2x2,2x1"), TrainConfig(epochs=3, patience=2, lr=0.05))


def _normalised(examples):  # what write_tsv writes: whitespace runs become one space
    return [Example(" ".join(ex.text.split()), ex.label) for ex in examples]


@pytest.fixture(scope="module")
def parts(kitchen):
    return {
        "train": _normalised(balanced(kitchen.train, 80)),
        "dev": _normalised(balanced(kitchen.dev, 20)),
        "test": _normalised(balanced(kitchen.test, 20)),
    }


@pytest.fixture(scope="module")
def from_tsv(parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("tsv")
    files = {name: write_tsv(root / f"{name}.tsv", examples) for name, examples in parts.items()}
    return train_text_classifier(
        load_files(files["train"], files["dev"], files["test"]), options=OPTIONS, verbose=False
    )


def _same_model(a, b):
    assert a.classes == b.classes
    assert a.metrics["dev_accuracy"] == b.metrics["dev_accuracy"]
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(sa[key].numpy(), sb[key].numpy()), key


def test_dataframe_gives_the_tsv_model(parts, from_tsv):
    pd = pytest.importorskip("pandas")
    frames = {
        name: pd.DataFrame({"review": [ex.text for ex in exs], "stars": [ex.label for ex in exs]})
        for name, exs in parts.items()
    }
    splits = splits_from(frames["train"], frames["dev"], frames["test"], text_column="review", label_column="stars")
    _same_model(train_text_classifier(splits, options=OPTIONS, verbose=False), from_tsv)


def test_hf_dataset_gives_the_tsv_model(parts, from_tsv):
    datasets = pytest.importorskip("datasets")
    sets = {
        name: datasets.Dataset.from_dict({"text": [ex.text for ex in exs], "label": [ex.label for ex in exs]})
        for name, exs in parts.items()
    }
    clf = train_text_classifier(splits_from(sets["train"], sets["dev"], sets["test"]), options=OPTIONS, verbose=False)
    _same_model(clf, from_tsv)
    # predicting from a Dataset column, a pandas Series, a numpy array
    texts = [ex.text for ex in parts["test"]]
    expected = clf.predict_proba(texts)
    np.testing.assert_array_equal(clf.predict_proba(sets["test"]), expected)
    np.testing.assert_array_equal(clf.predict_proba(np.array(texts, dtype=object)), expected)
    assert clf.evaluate(sets["test"]) == clf.evaluate(parts["test"])


def test_pairs_carve_the_dev_set_like_a_training_file(parts, tmp_path):
    pairs = [(ex.text, ex.label) for ex in parts["train"]]
    from_pairs = splits_from(pairs)
    from_file = load_files(write_tsv(tmp_path / "t.tsv", parts["train"]))
    assert from_pairs == from_file
    assert examples_from({"text": ["a", "b"], "label": [1, 0]}) == [Example("a", "1"), Example("b", "0")]


def test_bad_rows_name_the_row(caplog):
    with pytest.raises(DataError, match=r"^train data: no column 'text' \(columns: review, y\)"):
        splits_from({"review": ["x"], "y": [1]})
    with pytest.raises(DataError, match=r"^data row 2: text is float"):
        examples_from([("fine", "a"), (float("nan"), "b")])
    with pytest.raises(DataError, match=r"^data row 1: label nan is not a string or an integer"):
        examples_from([("fine", float("nan"))])
    with pytest.raises(DataError, match=r"^data row 1: expected a \(text, label\) pair"):
        examples_from(["just a text"])
    with pytest.raises(DataError, match="empty document"):
        examples_from([("", "a")], strict=True)
    assert examples_from([("  ", "a"), ("ok", "b")]) == [Example("ok", "b")]  # skipped, with a warning
    with pytest.raises(DataError, match=r"^train data: 1 label \('a'\)"):
        splits_from([("x", "a"), ("y", "a")])
    with pytest.raises(DataError, match="label 'c' does not occur in the training file"):
        splits_from([("x", "a"), ("y", "b")], dev=[("z", "c")])
    with pytest.raises(DataError, match="texts: expected a sequence of texts, got a single str"):
        texts_from("one text")

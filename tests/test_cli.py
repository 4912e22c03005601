"""The command line end to end on a tiny kitchen sample with the real GloVe vectors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sparse_rational.cli import main
from sparse_rational.pipeline import TextClassifier

REQUIRED_METRICS = {
    "dev_accuracy",
    "test_accuracy",
    "transitions",
    "structure",
    "parameters",
    "reg_strength",
    "train_seconds",
}
from conftest import FAST


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_complete_model_folder(baseline):
    for name in ["config.json", "model.safetensors", "vocab.txt", "metrics.json"]:
        assert (baseline / name).is_file(), name
    metrics = json.loads((baseline / "metrics.json").read_text())
    assert REQUIRED_METRICS <= metrics.keys()
    assert metrics["structure"] == [2, 2, 2, 1, 1]
    assert metrics["transitions"] == 8
    assert 0 <= metrics["test_accuracy"] <= 1
    # 8 states x (2 x 50 + 1) + classifier 5 x 2 + 2; embeddings are frozen
    assert metrics["parameters"] == 8 * 101 + 12
    vocab = (baseline / "vocab.txt").read_text().splitlines()
    assert vocab[:3] == ["<unk>", "<s>", "</s>"]
    assert len(vocab) < 20000  # only the model's own words, not GloVe's 400k


def test_save_load_predict_identical(baseline, tiny_files, capsys, tmp_path):
    texts = ["This blender is great , works perfectly !", "Broke after two days . Returned it .", "meh"]
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(texts) + "\n")
    code, out, err = run_cli(["predict", "--model", baseline, inp], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    clf = TextClassifier.load(baseline)
    probs = clf.predict_proba(texts)
    for row, p in zip(rows, probs):
        assert set(row["probabilities"]) == set(clf.classes)
        np.testing.assert_allclose([row["probabilities"][c] for c in clf.classes], p, rtol=0, atol=1e-7)
        assert row["label"] == clf.classes[int(p.argmax())]
    # the same model in memory before saving gives the same probabilities after a round trip
    clf2 = TextClassifier.load(baseline)
    clf2.save(tmp_path / "copy")
    np.testing.assert_array_equal(TextClassifier.load(tmp_path / "copy").predict_proba(texts), probs)


def test_predict_reads_stdin(baseline):
    proc = subprocess.run(
        [sys.executable, "-m", "sparse_rational.cli", "predict", "--model", str(baseline), "-"],
        input="great product\nterrible\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


def test_evaluate_matches_metrics(baseline, tiny_files, capsys, tmp_path):
    code, out, err = run_cli(
        ["evaluate", "--model", baseline, "--test", tiny_files["test"], "--json", tmp_path / "e.json"], capsys
    )
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    metrics = json.loads((baseline / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert result["examples"] == 40
    assert "accuracy" in out


def test_structure_learning_prunes_and_reports(tiny_files, tmp_path, capsys):
    out = tmp_path / "sparse"
    code, stdout, err = run_cli(
        [
            "train",
            "--train",
            tiny_files["train"],
            "--dev",
            tiny_files["dev"],
            "--embeddings",
            "glove-6b-50d",
            "--patterns",
            "4x3",
            "--reg-strength",
            "0.01",
            "--reg-epochs",
            "15",
            "--batch-size",
            "16",
            "--out",
            out,
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["reg_strength"] == 0.01
    assert "test_accuracy" not in m  # no test set given
    assert len(m["group_norms"]) == 4 and all(len(g) == 3 for g in m["group_norms"])
    # the final structure is exactly the longest prefixes of states above epsilon
    expected = []
    for norms in m["group_norms"]:
        k = 0
        while k < 3 and norms[k] >= 0.1:
            k += 1
        if k:
            expected.append(k)
    assert m["structure"] == expected == m["structure_before_finetune"]
    assert 1 <= m["transitions"] < 12  # this penalty removes some states, not all
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["structure"] == expected
    clf = TextClassifier.load(out)
    assert clf.model.wfsa.w.shape == (50, sum(expected))


BAD = [
    (["train", "--train", "missing.tsv", "--embeddings", "glove-6b-50d"], "missing.tsv"),
    (["train", "--dataset", "amazon:garden", "--embeddings", "glove-6b-50d"], "garden"),
    (["train", "--dataset", "imdb:x", "--embeddings", "glove-6b-50d"], "imdb"),
    (["train", "--train", "{train}", "--embeddings", "glove-7b-9d"], "glove-7b-9d"),
    (["train", "--train", "{train}", "--embeddings", "glove-6b-50d", "--patterns", "24y4"], "--patterns"),
    (
        [
            "train",
            "--train",
            "{train}",
            "--embeddings",
            "glove-6b-50d",
            "--patterns",
            "2x2",
            "--target-transitions",
            "50",
        ],
        "--target-transitions",
    ),
    (["train", "--train", "{train}", "--embeddings", "glove-6b-50d", "--lr", "fast"], "--lr"),
    (["train", "--train", "{malformed}", "--embeddings", "glove-6b-50d"], "malformed.tsv:2"),
    (["train", "--train", "{emptydoc}", "--embeddings", "glove-6b-50d", "--strict"], "emptydoc.tsv:2"),
    (["train", "--train", "{nolabel}", "--embeddings", "glove-6b-50d"], "nolabel.jsonl:1"),
    (["predict", "--model", "{nomodel}"], "model"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(args, needle, tiny_files, tmp_path):
    (tmp_path / "malformed.tsv").write_text("positive\tgood\nno tab on this line\n")
    (tmp_path / "emptydoc.tsv").write_text("positive\tgood\nnegative\t   \n")
    (tmp_path / "nolabel.jsonl").write_text('{"text": "good"}\n')
    subs = {
        "{train}": str(tiny_files["train"]),
        "{malformed}": "malformed.tsv",
        "{emptydoc}": "emptydoc.tsv",
        "{nolabel}": "nolabel.jsonl",
        "{nomodel}": str(tmp_path / "nope"),
    }
    argv = [subs.get(a, a) for a in args]
    if argv[0] == "train":
        argv += ["--out", "out", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "sparse_rational.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0]
    assert not (tmp_path / "out").exists()


def test_out_folder_that_is_not_a_model_is_refused(tiny_files, tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run_cli(
        ["train", "--train", tiny_files["train"], "--embeddings", "glove-6b-50d", "--out", tmp_path, *FAST], capsys
    )
    assert code == 2 and "refusing" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"

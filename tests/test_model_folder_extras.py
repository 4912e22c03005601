"""What a model folder tells: the per-epoch history and the provenance in metrics.json, the
model card, evaluate's macro-F1 and confusion matrix, rounded numbers; training callbacks."""

import json

import numpy as np
import pytest
from conftest import balanced

from sparse_rational.callbacks import Callback
from sparse_rational.config import ModelOptions, RunOptions, StructureOptions, TrainConfig
from sparse_rational.data import Splits, load_file
from sparse_rational.metrics import classification_report, rounded
from sparse_rational.pipeline import TextClassifier, train_structure_path, train_text_classifier


def test_history_provenance_and_card_of_a_cli_model(baseline):
    metrics = json.loads((baseline / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, metrics["epochs"] + 1))
    assert {h["phase"] for h in history} == {"train"}
    for h in history:
        assert {"loss", "penalty", "dev_accuracy", "lr", "seconds"} <= set(h) and h["loss"] > 0
    assert max(h["dev_accuracy"] for h in history) == metrics["dev_accuracy"]  # the best epoch is kept
    prov = metrics["provenance"]
    import torch

    assert prov["torch"] == torch.__version__ and prov["threads"] == 1 and prov["split_seed"] == 0
    assert prov["kernel"] in ("cpp", "scan", "reference", "triton")
    assert prov["call"].startswith("sparse-rational train --train ") and "--patterns 3x2,2x1" in prov["call"]
    card = (baseline / "README.md").read_text()
    assert card.splitlines()[1] == "# sparse-rational model: negative / positive"
    assert f"| dev accuracy | {metrics['dev_accuracy']:.4f} (40 texts) |" in card
    assert f"{metrics['transitions']} transitions" in card and prov["call"] in card
    assert "## Limits" in card


def test_metrics_numbers_are_rounded(baseline):
    text = (baseline / "metrics.json").read_text()
    numbers = [tok for tok in text.replace(",", " ").split() if tok[:1].isdigit() and "." in tok]
    assert numbers and all(len(n.split(".")[1].rstrip("e-0123456789")) <= 6 for n in numbers if "e" not in n)
    assert rounded({"a": [0.7350000143051147, 2], "b": (1.0000001,)}) == {"a": [0.735, 2], "b": [1.0]}


def test_evaluate_report_agrees_with_scikit_learn(baseline, tiny_files):
    metrics = pytest.importorskip("sklearn.metrics")
    clf = TextClassifier.load(baseline)
    test = load_file(tiny_files["test"])
    report = clf.evaluate_report(test)
    truth = [clf.classes.index(ex.label) for ex in test]
    predicted = [clf.classes.index(label) for label in clf.predict([ex.text for ex in test])]
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted), abs=1e-6)
    assert report["accuracy"] == pytest.approx(clf.evaluate(test), abs=1e-6)
    assert report["macro_f1"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro"), abs=1e-6)
    assert (
        report["confusion_matrix"]["rows_true_columns_predicted"] == metrics.confusion_matrix(truth, predicted).tolist()
    )
    # three classes, one never predicted, one unseen label
    r = classification_report(np.array([0, 1, 2, 2, -1]), np.array([0, 1, 1, 2, 0]), ["a", "b", "c"])
    assert r["accuracy"] == 0.6 and r["unseen_labels"] == 1
    assert r["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2}
    assert r["per_class"]["a"]["precision"] == 0.5  # the unseen-label text predicted "a" is a false positive


def test_evaluate_cli_prints_macro_f1_and_confusion(baseline, tiny_files, capsys, tmp_path):
    from sparse_rational.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(baseline), "--test", str(tiny_files["test"]), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads(out.read_text())
    assert lines[0] == f"accuracy {report['accuracy']:.4f} on 40 examples"
    assert lines[1] == f"macro-F1 {report['macro_f1']:.4f}"
    assert lines[2].startswith("confusion matrix") and lines[3].split() == ["negative", "positive"]
    assert [int(v) for v in lines[4].split()[1:]] == report["confusion_matrix"]["rows_true_columns_predicted"][0]


class _Recorder(Callback):
    def __init__(self):
        self.epochs, self.ended = [], []

    def on_epoch_end(self, phase, log):
        self.epochs.append((phase, log.epoch))

    def on_train_end(self, metrics):
        self.ended.append(metrics["transitions"])


@pytest.fixture(scope="module")
def tiny_splits(kitchen):
    return Splits(balanced(kitchen.train, 60), balanced(kitchen.dev, 20), [])


def test_callbacks_see_every_epoch_of_every_phase(tiny_splits):
    rec, calls = _Recorder(), []
    options = RunOptions(
        "glove-6b-50d",
        ModelOptions(patterns="3x2"),
        TrainConfig(epochs=3, patience=3),
        StructureOptions(target_transitions=(4, 2), reg_epochs=12, path_growth=2.0, path_warmup=0),
    )
    run = train_structure_path(
        tiny_splits, (4, 2), options=options, verbose=False, callbacks=[rec, lambda p, log: calls.append(p)]
    )
    assert run.models, run.missed
    phases = [p for p, _ in rec.epochs]
    assert phases[0] == "path" and calls == phases
    for target, clf in run.models.items():
        assert f"finetune:t{target}" in phases
        history = clf.metrics["history"]
        assert {h["phase"] for h in history} == {"path", f"finetune:t{target}"}
        assert all("reg_strength" in h and "transitions" in h for h in history if h["phase"] == "path")
    assert sorted(rec.ended) == sorted(clf.metrics["transitions"] for clf in run.models.values())


def test_tensorboard_callback_writes_scalars(tiny_splits, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparse_rational.callbacks import TensorBoardCallback

    options = RunOptions("glove-6b-50d", ModelOptions(patterns="2x1"), TrainConfig(epochs=3, patience=3))
    clf = train_text_classifier(tiny_splits, options=options, verbose=False, callbacks=[TensorBoardCallback(tmp_path)])
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3]
    assert [round(e.value, 5) for e in losses] == [round(h["loss"], 5) for h in clf.metrics["history"]]
    assert "train/dev_accuracy" in events.Tags()["scalars"]

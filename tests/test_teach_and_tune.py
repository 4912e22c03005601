"""Tuned word vectors (--vectors tuned) and learning from a teacher (--teacher, --transfer,
--augment): the rows are trained and travel with the model; the distillation loss has the
values its formula gives; bad teachers and transfer files are one-line errors (exit 2)."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import FAST, balanced, tiny_args

from sparse_rational.cli import main
from sparse_rational.config import ModelOptions, RunOptions, StructureOptions, TeachOptions, TrainConfig
from sparse_rational.data import Splits
from sparse_rational.errors import ParameterError
from sparse_rational.pipeline import TextClassifier, train_text_classifier
from sparse_rational.structure import prune
from sparse_rational.teach import MASK, augment, read_transfer
from sparse_rational.train import distillation_loss, soften

FAST_TRAIN = TrainConfig(epochs=3, patience=3, lr=0.05, vector_lr=0.05, negation_pairs=0.0)


@pytest.fixture(scope="module")
def small(kitchen):
    return Splits(balanced(kitchen.train, 120), balanced(kitchen.dev, 30), balanced(kitchen.test, 30))


@pytest.fixture(scope="module")
def tuned(small):
    options = RunOptions(model=ModelOptions(patterns="3x2,2x1", vectors="tuned"), train=FAST_TRAIN)
    return train_text_classifier(small, options=options, verbose=False)


@pytest.fixture(scope="module")
def glove(small):
    """The pretrained rows the tuned model started from (its featurizer, built again)."""
    from sparse_rational.embeddings.featurizer import StaticVectors

    return StaticVectors.build(small, "glove-6b-50d", seed=FAST_TRAIN.seed, verbose=False).matrix


def test_tuned_rows_move_and_the_frozen_start_does_not(tuned, glove):
    start = glove
    rows = tuned.model.embeddings.weight
    assert tuned.featurizer.rows is tuned.model.embeddings  # the featurizer owns the rows the model reads
    assert not isinstance(rows, torch.nn.Parameter) and not tuned.model.tuned_rows  # trained: frozen again
    assert "embeddings.start" not in dict(tuned.model.named_buffers())
    assert not torch.equal(tuned.featurizer.matrix, start)
    moved = (rows - start).norm(dim=1) > 1e-6
    assert moved.sum() > 100  # the training words' rows were trained
    assert not moved[len(tuned.vocab) - 1 :].all() or moved.sum() < len(tuned.vocab)
    assert tuned.metrics["vectors"] == "tuned"
    assert tuned.metrics["tuned_vector_parameters"] == rows.numel()
    assert tuned.metrics["parameters"] < rows.numel()  # the WFSAs and the classifier only


def test_a_saved_tuned_model_predicts_exactly_as_trained(tuned, small, tmp_path):
    texts = [e.text for e in small.test]
    before = tuned.predict_proba(texts)
    tuned.save(tmp_path / "m")
    loaded = TextClassifier.load(tmp_path / "m")
    assert torch.equal(loaded.model.embeddings.weight, tuned.model.embeddings.weight)
    np.testing.assert_allclose(loaded.predict_proba(texts), before, atol=1e-6)
    assert "tuned in training" in (tmp_path / "m" / "README.md").read_text()
    # the PyTorch path and the folded one agree on the tuned rows
    data = loaded.encode(small.test, strict_labels=False)
    from sparse_rational.train import predict_proba

    np.testing.assert_allclose(predict_proba(loaded.model, data).numpy(), before, atol=1e-5)


def test_export_carries_the_tuned_rows(tuned, tmp_path):
    tuned.save(tmp_path / "m")
    assert main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "m.json")]) == 0
    exported = np.array(json.loads((tmp_path / "m.json").read_text())["embeddings"])
    np.testing.assert_allclose(exported, tuned.model.embeddings.weight.double().numpy(), atol=1e-6)


def _tuning(tuned, glove):
    """A copy of the trained model tuning its rows again, from the GloVe start."""
    import copy

    model = copy.deepcopy(tuned.model)
    model.embeddings.tune_(start=glove)
    return model


def test_pruning_keeps_tuning_the_rows_from_the_same_start(tuned, glove):
    model = _tuning(tuned, glove)
    pruned = prune(model, 0.0).model
    assert pruned.tuned_rows
    assert pruned.embeddings is not model.embeddings  # rows of its own, with the same values and start
    assert torch.equal(pruned.embeddings.weight.detach(), model.embeddings.weight.detach())
    assert torch.equal(pruned.embeddings.start, model.embeddings.start)
    assert list(pruned.state_dict()) == list(model.state_dict())  # "embeddings": the start is never saved
    assert "embeddings" in pruned.state_dict() and not any("start" in k for k in pruned.state_dict())


def test_the_pull_brings_rows_back_to_their_start(small, glove):
    far = RunOptions(
        model=ModelOptions(patterns="2x1", vectors="tuned"),
        train=TrainConfig(epochs=2, patience=2, lr=0.05, vector_lr=0.05, vector_pull=0.0),
    )
    near = RunOptions(model=far.model, train=TrainConfig(epochs=2, patience=2, lr=0.05, vector_lr=0.05, vector_pull=10))
    dist = []
    for options in (far, near):
        clf = train_text_classifier(small, options=options, verbose=False)
        dist.append(float((clf.featurizer.matrix - glove).norm()))
    assert dist[1] < 0.5 * dist[0]


def test_tuned_vectors_and_students_need_static_vectors(small):
    # refused before anything is encoded (no encoder is loaded: the options are checked first)
    with pytest.raises(ParameterError, match="vectors"):
        train_text_classifier(small, options=RunOptions("hf:minilm", ModelOptions(vectors="tuned")), verbose=False)
    with pytest.raises(ParameterError, match="teacher"):
        train_text_classifier(small, options=RunOptions("hf:minilm", teach=TeachOptions("tfidf")), verbose=False)


def test_the_group_lasso_never_touches_the_rows(tuned, glove):
    model = _tuning(tuned, glove)
    rows = model.embeddings.weight
    before = rows.detach().clone()
    model.penalty().backward()
    assert model.wfsa.w.grad is not None and model.wfsa.w.grad.any()
    assert rows.grad is None or not rows.grad.any()
    assert torch.equal(rows.detach(), before)


# -- the distillation loss ------------------------------------------------------------------


def test_distillation_loss_is_the_mix_its_formula_gives():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    labels = torch.tensor([0, -1])
    p = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    t, a = 2.0, 0.25
    q = soften(p, t)
    np.testing.assert_allclose(q[0].numpy(), np.array([0.8**0.5, 0.2**0.5]) / (0.8**0.5 + 0.2**0.5), rtol=1e-6)
    logp_t = torch.log_softmax(logits / t, -1)
    soft = -(q * logp_t).sum(-1) * t * t
    hard0 = -torch.log_softmax(logits, -1)[0, 0]
    expected = ((1 - a) * hard0 + a * soft[0] + soft[1]) / 2
    got = distillation_loss(logits, labels, q, a, t)
    assert math.isclose(float(got), float(expected), rel_tol=1e-6)
    # weight 0 on labelled texts is plain cross-entropy
    only = distillation_loss(logits[:1], labels[:1], q[:1], 0.0, t)
    assert math.isclose(float(only), float(hard0), rel_tol=1e-6)


# -- augmentation and transfer files ---------------------------------------------------------


def test_augment_is_deterministic_distinct_and_masks():
    texts = [f"this pan is not good at all and it broke after {k} weeks of use" for k in range(30)]
    a, b = augment(texts, 2, seed=3), augment(texts, 2, seed=3)
    assert a == b and a != augment(texts, 2, seed=4)
    assert len(set(a)) == len(a) and not set(a) & set(texts)
    assert 50 <= len(a) <= 60
    assert any(MASK in t for t in a)
    assert any(len(t.split()) <= 5 for t in a)  # n-gram samples
    assert augment(texts, 0) == []


@pytest.mark.parametrize(
    "content, message",
    [(b"", "no text"), (b"\n  \n", "no text"), (b"\x00\x01binary", "binary"), (b"ok\n\xff\xfe bad\n", "line 2")],
)
def test_bad_transfer_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "transfer.txt"
    path.write_bytes(content)
    with pytest.raises(ParameterError, match=message):
        read_transfer(path)


def test_an_fdu_unlabel_file_gives_its_texts(tmp_path):
    path = tmp_path / "kitchen.task.unlabel"
    path.write_text("0\tgreat pan\n1\tbad kettle\n", encoding="utf-8")
    assert read_transfer(path) == ["great pan", "bad kettle"]


# -- teachers ----------------------------------------------------------------------------------


def test_a_tfidf_teacher_teaches_and_the_card_says_so(small, tmp_path):
    (tmp_path / "more.txt").write_text("not good at all\nworks great, love it\n", encoding="utf-8")
    options = RunOptions(
        model=ModelOptions(patterns="2x2,2x1"),
        train=FAST_TRAIN,
        teach=TeachOptions(teacher="tfidf", transfer=str(tmp_path / "more.txt"), augment=1),
    )
    clf = train_text_classifier(small, options=options, verbose=False)
    t = clf.metrics["teacher"]
    assert t["kind"] == "tfidf" and t["transfer_texts"] == 2 and 100 <= t["augmented_texts"] <= 120
    assert 0.5 <= t["teacher_train_accuracy"] < 1.0  # cross-fitted: not memorised
    clf.save(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Taught by a teacher" in card and "2 unlabelled transfer texts" in card
    assert TextClassifier.load(tmp_path / "m").predict(["great"])[0] in clf.classes


def test_a_folder_teacher_is_cached_and_its_student_holds_nothing_of_it(small, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_RATIONAL_CACHE", str(tmp_path / "cache" / "vectors"))
    teacher = train_text_classifier(
        small, options=RunOptions(model=ModelOptions(patterns="2x1"), train=FAST_TRAIN), verbose=False
    )
    teacher.save(tmp_path / "teacher")
    calls = []
    real = TextClassifier.predict_proba

    def counting(self, texts, max_tokens=0):
        calls.append(len(texts))
        return real(self, texts, max_tokens)

    monkeypatch.setattr(TextClassifier, "predict_proba", counting)
    options = RunOptions(
        model=ModelOptions(patterns="2x1"),
        train=FAST_TRAIN,
        structure=StructureOptions(),
        teach=TeachOptions(teacher=str(tmp_path / "teacher"), augment=1),
    )
    first = train_text_classifier(small, options=options, verbose=False)
    scored = sum(calls)
    assert scored >= len(small.train)
    train_text_classifier(small, options=options, verbose=False)
    assert sum(calls) == scored  # the second run read every probability from the cache
    assert list((tmp_path / "cache" / "teacher").glob("*.npz"))
    first.save(tmp_path / "student")
    assert not any("teacher" in p.name for p in (tmp_path / "student").iterdir())


def _cli_error(args, capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def test_teacher_errors_are_one_line_before_training(tiny_files, tmp_path, capsys, baseline):
    base = ["train", *tiny_args(tiny_files), "--patterns", "2x1", *FAST, "--out", str(tmp_path / "o")]
    # a teacher whose classes differ from the data's
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"{lab}\tword {k}\n" for k in range(20) for lab in ("a", "b")), encoding="utf-8")
    args = ["train", "--train", str(other), "--embeddings", "glove-6b-50d", "--patterns", "2x1", *FAST]
    assert main([*args, "--out", str(tmp_path / "ab")]) == 0
    err = _cli_error([*base, "--teacher", str(tmp_path / "ab")], capsys)
    assert "classes" in err and "--teacher" in err
    # not a model folder; a folder that would need a pickle
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    assert "pickle" in _cli_error([*base, "--teacher", str(tmp_path / "pickled")], capsys)
    assert "not a model folder" in _cli_error([*base, "--teacher", str(tmp_path / "nowhere")], capsys)
    # transfer files and --augment
    (tmp_path / "empty.txt").write_text("")
    assert "no text" in _cli_error([*base, "--teacher", "tfidf", "--transfer", str(tmp_path / "empty.txt")], capsys)
    assert "--augment" in _cli_error([*base, "--teacher", "tfidf", "--augment", "-1"], capsys)
    assert "--augment" in _cli_error([*base, "--teacher", "tfidf", "--augment", "two"], capsys)
    assert "teacher" in _cli_error([*base, "--augment", "2"], capsys)
    assert not (tmp_path / "o").exists()
    # a teacher of another embedding kind is fine: the tiny baseline teaches a tuned student
    assert main([*base, "--teacher", str(baseline), "--vectors", "tuned"]) == 0


def test_evaluate_contrast_scores_the_sentences_and_counts_long_wfsas(baseline, tiny_files, capsys):
    assert main(["evaluate", "--model", str(baseline), "--contrast", "kitchen", "--json", "-"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    c = result["contrast"]
    assert c["n"] == 400 and c["domain"] == "kitchen" and 0 <= c["accuracy"] <= 1
    assert sum(f["n"] for f in c["families"].values()) == 400
    assert c["wfsas"] == 5 and c["long_wfsas"] == 3  # the baseline is 3x2,2x1
    assert "accuracy" not in result  # no test set given: the contrast set alone
    assert "contrast accuracy" in captured.err
    # with a test set, both; a domain that is not one is a one-line error
    assert main(["evaluate", "--model", str(baseline), "--test", str(tiny_files["test"]), "--contrast"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "contrast accuracy" in out and "(generic)" in out
    assert "kitchen, books" in _cli_error(["evaluate", "--model", str(baseline), "--contrast", "garden"], capsys)


def test_the_depth_discount_weighs_deeper_states_less():
    from sparse_rational.model import ModelConfig, RationalClassifier
    from sparse_rational.structure import group_norms_by_wfsa

    model = RationalClassifier(ModelConfig((3, 1), 4, 2))
    assert torch.equal(model.penalty_weights(), torch.ones(4))
    plain = float(model.penalty().detach())
    model.depth_discount = 1.0
    assert torch.allclose(model.penalty_weights(), torch.tensor([1.0, 1 / 2, 1 / 3, 1.0]))
    norms = torch.cat([torch.tensor(g) for g in group_norms_by_wfsa(model)])
    assert math.isclose(float(model.penalty().detach()), float((norms * model.penalty_weights()).sum()), rel_tol=1e-5)
    assert float(model.penalty().detach()) < plain
    # the proximal step shrinks a deeper state's group by its weight: state 3 of WFSA 1 by a third
    from sparse_rational.structure import group_soft_threshold_

    before = model.wfsa.group_norms().clone()
    group_soft_threshold_(model, 0.01 * model.penalty_weights())
    shrunk = before - model.wfsa.group_norms()
    assert torch.allclose(shrunk, 0.01 * model.penalty_weights(), atol=1e-6)
    # pruning keeps the discount
    assert prune(model, 0.0).model.depth_discount == 1.0


def test_a_tuned_and_taught_run_resumes_to_the_same_result(small, tuned, tmp_path, monkeypatch):
    from test_reliability_helpers import Interrupt, StopAfter, same_result

    from sparse_rational.checkpoint import Checkpointer

    # a folder teacher: its probabilities are the same numbers on every run (a TF-IDF teacher's
    # logistic regression may differ in the last bit with the BLAS threads, and so would the run)
    monkeypatch.setenv("SPARSE_RATIONAL_CACHE", str(tmp_path / "cache" / "vectors"))
    tuned.save(tmp_path / "teacher")
    options = RunOptions(
        model=ModelOptions(patterns="3x2", vectors="tuned"),
        train=TrainConfig(epochs=3, patience=3, lr=0.05, vector_lr=0.05, vector_pull=1.0),
        structure=StructureOptions(reg_strength=0.003, reg_epochs=3),
        teach=TeachOptions(str(tmp_path / "teacher"), augment=1),
    )
    counter = StopAfter(tmp_path / "count", "h", stop_after=-1, verbose=False)
    reference = train_text_classifier(small, options=options, verbose=False, checkpoint=counter)
    assert 0 < reference.metrics["transitions"] < 6, reference.metrics["structure"]
    assert counter.saves >= 4  # three penalised epochs, then finetuning
    for stop in (2, 4):  # inside the penalised phase, inside finetuning (tuned rows are weights: saved)
        ck = StopAfter(tmp_path / f"ck{stop}", "h", stop_after=stop, verbose=False)
        with pytest.raises(Interrupt):
            train_text_classifier(small, options=options, verbose=False, checkpoint=ck)
        again = Checkpointer(tmp_path / f"ck{stop}", "h", resume=True, verbose=False)
        same_result(reference, train_text_classifier(small, options=options, verbose=False, checkpoint=again))


def test_snapshots_and_kept_phases_carry_tuned_rows(tuned, glove):
    from sparse_rational.checkpoint import load_weights, snapshot_weights

    model = _tuning(tuned, glove)
    rows = model.embeddings.weight.detach().clone()
    weights = snapshot_weights(model)  # what the path's snapshots and the finished phases keep
    with torch.no_grad():
        model.embeddings.weight.add_(1.0)
    load_weights(model, weights, "a snapshot")
    assert torch.equal(model.embeddings.weight.detach(), rows)  # the snapshot held the tuned rows


def test_the_readme_scorer_reads_an_exported_tuned_taught_model(tiny_files, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    from sparse_rational.data import tokenize

    monkeypatch.chdir(tmp_path)
    args = ["train", *tiny_args(tiny_files), "--patterns", "2x3,2x1", "--readout", "mean", *FAST]
    assert main([*args, "--vectors", "tuned", "--vector-lr", "0.05", "--teacher", "tfidf", "--out", "m"]) == 0
    assert main(["export", "--model", "m", "--out", "mine.json"]) == 0
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "mine.json" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    clf = TextClassifier.load(tmp_path / "m")
    assert clf.model.tuned_rows is False and clf.metrics["vectors"] == "tuned"  # loaded for prediction: a buffer
    texts = ["Works great , I love it", "it broke and the company would not refund me"]
    for text, p in zip(texts, clf.predict_proba(texts)):
        got = namespace["probabilities"](tokenize(text))
        np.testing.assert_allclose([got[c] for c in clf.classes], p, atol=1e-5)


def test_finetune_vectors_are_frozen_while_the_structure_is_learned(small):
    from sparse_rational.learn import learn_structure
    from sparse_rational.pipeline import prepare_run

    options = RunOptions(
        model=ModelOptions(patterns="3x2", vectors="finetune"),
        train=FAST_TRAIN,
        structure=StructureOptions(reg_strength=0.003, reg_epochs=2),
    )
    _, checked, run = prepare_run(small, options, verbose=False)
    assert not run.make().tuned_rows
    res = learn_structure(run.make, run.train, run.dev, checked.train, checked.structure, verbose=False)
    assert res.model.tuned_rows  # the pruned model tuned its rows while finetuning
    start = run.clf.featurizer.matrix  # the featurizer's pretrained rows: every model trains a copy
    assert torch.equal(res.model.embeddings.start, start)
    assert (res.model.embeddings.weight.detach() - start).abs().max() > 1e-4
    # without structure learning there is no structure phase: tuned all along
    plain = train_text_classifier(small, options=replace(options, structure=StructureOptions()), verbose=False)
    assert plain.metrics["vectors"] == "tuned" and plain.metrics["hyperparameters"]["vectors"] == "finetune"


def test_the_estimator_warns_of_a_tiny_dev_set(small, capsys):
    from sparse_rational.estimator import SparseRationalClassifier

    texts = [e.text for e in small.train[:24]]
    labels = [e.label for e in small.train[:24]]
    SparseRationalClassifier(patterns="2x1", epochs=1, vectors="tuned").fit(texts, labels)
    err = capsys.readouterr().err
    assert "the dev set is 2 texts" in err or "the dev set is 3 texts" in err, err
    everything = [e.text for e in small.train], [e.label for e in small.train]
    SparseRationalClassifier(patterns="2x1", epochs=1, dev_fraction=0.5).fit(*everything)
    assert "the dev set is" not in capsys.readouterr().err


def test_tuned_rows_train_the_same_on_two_threads(small):
    """The rows' gradient is summed in a fixed order (embedding's backward, not index_put's),
    so two runs give the same bits, and a resumed run the uninterrupted one's."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        options = RunOptions(model=ModelOptions(patterns="3x2", vectors="tuned"), train=FAST_TRAIN)
        a, b = (train_text_classifier(small, options=options, verbose=False) for _ in range(2))
    finally:
        torch.set_num_threads(before)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


@pytest.mark.parametrize(
    "part, name, value",
    [
        ("train", "batch_size", 0),
        ("train", "epochs", 0),
        ("train", "epochs", -1),
        ("train", "patience", -1),
        ("train", "lr", float("nan")),
        ("train", "batch_size", 2.5),
        ("model", "dropout", 1.5),
        ("model", "vectors", "melted"),
        ("structure", "path_growth", 1.0),
        ("teach", "augment", -2),
    ],
)
def test_the_api_refuses_what_the_command_line_refuses(small, part, name, value):
    """Issue 29, items 10 and 14: one set of checks (the config tree's) for every entry."""
    options = RunOptions()
    options = replace(options, **{part: replace(getattr(options, part), **{name: value})})
    with pytest.raises(ParameterError, match=f"^{name}: "):
        train_text_classifier(small, options=options, verbose=False)


def test_the_estimator_refuses_what_the_command_line_refuses(small):
    from sparse_rational.estimator import SparseRationalClassifier

    texts, labels = [e.text for e in small.train], [e.label for e in small.train]
    for kwargs in ({"epochs": 0}, {"patience": -1}, {"batch_size": -3}):
        with pytest.raises(ParameterError, match=f"^{next(iter(kwargs))}: "):
            SparseRationalClassifier(**kwargs).fit(texts, labels)


def test_negation_pairs_train_and_bad_values_are_one_line_errors(small, tiny_files, tmp_path, capsys):
    options = RunOptions(model=ModelOptions(patterns="2x2"), train=replace(FAST_TRAIN, epochs=1, negation_pairs=0.5))
    from sparse_rational.pipeline import prepare_run

    _, _, data = prepare_run(small, options, verbose=False)
    assert len(small.train) + 20 < len(data.train) <= 2 * len(small.train)  # the pairs joined the training split
    clf = train_text_classifier(small, options=options, verbose=False)
    assert clf.metrics["hyperparameters"]["negation_pairs"] == 0.5  # and the card says so
    base = ["train", *tiny_args(tiny_files), "--patterns", "2x1", *FAST, "--out", str(tmp_path / "o")]
    assert "--negation-pairs" in _cli_error([*base, "--negation-pairs", "-1"], capsys)
    three = tmp_path / "three.tsv"
    three.write_text("".join(f"{lab}\tit is word {k}\n" for k in range(10) for lab in "abc"), encoding="utf-8")
    args = ["train", "--train", str(three), "--embeddings", "glove-6b-50d", "--patterns", "2x1", *FAST]
    err = _cli_error([*args, "--negation-pairs", "1", "--out", str(tmp_path / "o3")], capsys)
    assert "--negation-pairs" in err and "2 classes" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o3").exists()


@pytest.mark.parametrize(
    "classes, texts, given, used",
    [
        (["negative", "positive"], 4000, "auto", 0.25),
        (["NEG", "Pos"], 10**6, "auto", 0.25),
        (["negative", "positive"], 3999, "auto", 0.0),  # too few texts to tell a word's label
        (["0", "1"], 10**6, "auto", 0.0),  # 0/1 need not be sentiment: no pairs unless asked
        (["objective", "subjective"], 10**6, "auto", 0.0),
        (["a", "b", "c"], 10**6, "auto", 0.0),
        (["0", "1"], 10, 0.5, 0.5),
        (["negative", "positive"], 10**6, 0.0, 0.0),
    ],
)
def test_negation_pairs_auto_means_pairs_for_large_sentiment_data_only(classes, texts, given, used):
    from sparse_rational.config import AUTO_NEGATION_MIN_TEXTS, AUTO_NEGATION_PAIRS, check
    from sparse_rational.validate import resolve_negation_pairs

    assert (AUTO_NEGATION_PAIRS, AUTO_NEGATION_MIN_TEXTS) == (0.25, 4000)
    options = RunOptions(train=TrainConfig(negation_pairs=given))
    assert resolve_negation_pairs(options, classes, texts).train.negation_pairs == used
    check(TrainConfig(negation_pairs=given))
    with pytest.raises(ParameterError, match="negation_pairs"):
        check(TrainConfig(negation_pairs="sometimes"))

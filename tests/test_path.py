"""Proximal group lasso and the regularisation path (structure learning in one run)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_reliability_helpers import Interrupt, StopAfter
from test_structure_learning import make_task, one_hot_vectors  # noqa: F401 (fixture)

from sparse_rational.checkpoint import Checkpointer
from sparse_rational.cli import main
from sparse_rational.config import RunOptions, StructureOptions, TrainConfig
from sparse_rational.data import Splits
from sparse_rational.model import ModelConfig, RationalClassifier
from sparse_rational.pipeline import TextClassifier, train_structure_path, train_text_classifier
from sparse_rational.structure import adam_group_step_sizes, group_soft_threshold_, proximal_step_, prune

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the proximal operator ----------------------------------------------------------------------


def test_group_soft_threshold_is_the_closed_form_prox():
    torch.manual_seed(0)
    model = RationalClassifier(ModelConfig((3, 2, 4), 7, 2, vocab_size=5)).double()
    w, v, b = (p.detach().clone() for p in (model.wfsa.w, model.wfsa.v, model.wfsa.b))
    norms = torch.sqrt(w.pow(2).sum(0) + v.pow(2).sum(0) + b.pow(2))
    t = norms * torch.tensor([0.5, 1.5, 0.0, 1.0, 0.99, 2.0, 0.1, 1.0000001, 0.3], dtype=torch.float64)
    group_soft_threshold_(model, t)
    for s in range(9):
        g = torch.cat([w[:, s], v[:, s], b[s : s + 1]])
        # argmin_x 1/2 ||x - g||^2 + t ||x||: zero if ||g|| <= t, else g (1 - t / ||g||)
        expected = torch.zeros_like(g) if norms[s] <= t[s] else g * (1 - t[s] / norms[s])
        got = torch.cat([model.wfsa.w[:, s], model.wfsa.v[:, s], model.wfsa.b[s : s + 1]])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    zero = [s for s in range(9) if norms[s] <= t[s]]
    assert zero == [1, 3, 5, 7]  # exactly zero, not small
    assert all(float(model.wfsa.group_norms()[s].detach()) == 0.0 for s in zero)


def test_prox_minimises_the_prox_objective_on_random_groups():
    """Against the definition: no random perturbation of the result lowers the objective."""
    gen = torch.Generator().manual_seed(1)
    model = RationalClassifier(ModelConfig((2, 2), 4, 2, vocab_size=3)).double()
    with torch.no_grad():
        for p in (model.wfsa.w, model.wfsa.v, model.wfsa.b):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    z = [p.detach().clone() for p in (model.wfsa.w, model.wfsa.v, model.wfsa.b)]
    t = torch.rand(4, generator=gen, dtype=torch.float64) * 3

    def objective(w, v, b):
        dist = (w - z[0]).pow(2).sum(0) + (v - z[1]).pow(2).sum(0) + (b - z[2]).pow(2)
        return float((0.5 * dist + t * torch.sqrt(w.pow(2).sum(0) + v.pow(2).sum(0) + b.pow(2))).sum().detach())

    group_soft_threshold_(model, t)
    best = objective(model.wfsa.w, model.wfsa.v, model.wfsa.b)
    for _ in range(200):
        d = [torch.randn(p.shape, generator=gen, dtype=torch.float64) * 1e-3 for p in z]
        assert objective(model.wfsa.w + d[0], model.wfsa.v + d[1], model.wfsa.b + d[2]) >= best - 1e-12


def test_adam_step_sizes_follow_the_second_moments():
    model = RationalClassifier(ModelConfig((2,), 3, 2, vocab_size=3)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    assert torch.equal(adam_group_step_sizes(model, opt), torch.zeros(2, dtype=torch.float64))
    grads = {
        model.wfsa.w: torch.tensor([[1.0, 0.01]] * 3),
        model.wfsa.v: torch.tensor([[1.0, 0.01]] * 3),
        model.wfsa.b: torch.tensor([1.0, 0.01]),
    }
    for p in model.parameters():
        p.grad = grads.get(p, torch.zeros_like(p)).to(p.dtype)
    opt.step()
    eta = adam_group_step_sizes(model, opt)
    # after one step v_hat = g^2: D = |g| + eps, so eta = lr / |g|
    torch.testing.assert_close(eta, torch.tensor([0.1, 10.0], dtype=torch.float64), rtol=1e-6, atol=0)
    before = model.wfsa.group_norms().detach().tolist()
    proximal_step_(model, opt, reg_strength=0.01)
    after = model.wfsa.group_norms().detach().tolist()
    assert after[0] == pytest.approx(before[0] - 0.001, abs=1e-9)  # shrinks by eta * lambda (eps aside)
    assert after[1] == pytest.approx(max(0.0, before[1] - 0.1), abs=1e-6)


# -- proximal training gives exact zeros ----------------------------------------------------------


def _splits(kind="unigram"):
    return Splits(make_task(kind, 400, 1), make_task(kind, 100, 2), make_task(kind, 100, 3))


def test_proximal_training_makes_exact_zeros_and_pruning_keeps_the_logits(one_hot_vectors):  # noqa: F811
    cfg = TrainConfig(epochs=1, patience=1, batch_size=32, lr=0.05, seed=0)
    opts = StructureOptions(reg_epochs=30, penalty_update="proximal", reg_strength=0.003)
    from sparse_rational.learn import penalise
    from sparse_rational.phases import Phases
    from sparse_rational.pipeline import prepare_run

    options = RunOptions(embeddings=one_hot_vectors, train=cfg, structure=opts)
    _, _, run = prepare_run(_splits(), options.override(patterns="4x3", dropout=0.0, input_dropout=0.0), False)
    model = penalise(
        Phases(verbose=False), "penalised", run.make, run.train, run.dev, cfg, opts, 0.003, verbose=False
    ).model
    norms = model.wfsa.group_norms().detach()
    assert (norms == 0).sum() >= 6, norms  # removed groups are exactly zero, not small
    assert ((norms > 0) & (norms < 0.1)).sum() == 0, norms
    model.eval()
    pruned = prune(model, 0.1).model.eval()
    ids, mask = torch.randint(0, model.config.vocab_size, (8, 15)), torch.ones(8, 15, dtype=torch.bool)
    # the removed states are exactly zero at every step, so the pruned model computes the same
    # function; what remains is the summation order of the matmul over fewer columns
    x = model.embeddings[ids].transpose(0, 1)
    dead = model.wfsa.group_norms().detach() == 0
    for t in range(1, 16):
        assert torch.equal(model.wfsa.states(x[:t], mask.T[:t])[:, dead], torch.zeros(8, int(dead.sum())))
    torch.testing.assert_close(model(ids, mask), pruned(ids, mask), rtol=0, atol=1e-5)
    assert pruned.config.transitions < 12


# -- the regularisation path ----------------------------------------------------------------------


def _path_options(update="proximal", **kw):
    return RunOptions(
        embeddings="unused",
        train=TrainConfig(epochs=15, patience=5, batch_size=32, lr=0.05, seed=0),
        structure=StructureOptions(
            reg_epochs=40, penalty_update=update, path_start=1e-3, path_growth=1.5, path_warmup=1, **kw
        ),
        model=RunOptions().model.__class__(dropout=0.0, input_dropout=0.0),
    )


@pytest.mark.parametrize("update", ["proximal", "gradient"])
def test_path_reaches_every_target_in_one_run(update, one_hot_vectors, tmp_path):  # noqa: F811
    run = train_structure_path(
        _splits(), [9, 6, 3], embeddings=one_hot_vectors, patterns="4x3", options=_path_options(update), verbose=False
    )
    assert not run.missed, run.missed
    assert sorted(run.models) == [3, 6, 9]
    for target, clf in run.models.items():
        assert abs(clf.metrics["transitions"] - target) <= 2
        assert clf.metrics["target_transitions"] == target
    # one penalised run: lambda only grows, transitions only fall along it
    lams = [p["reg_strength"] for p in run.path if p["reg_strength"]]
    assert lams == sorted(lams)
    steps = [run.snapshots[t]["step"] for t in (9, 6, 3)]
    assert steps == sorted(steps)
    run.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["path.json", "path.png", "t3", "t6", "t9"]
    for t in (9, 6, 3):
        clf = TextClassifier.load(tmp_path / "out" / f"t{t}")
        # the saved model is the one reached for this target: it scores as the model in memory
        texts = ["w4 w0 w5", "w6 w1", "w7 w8 w0", "w1 w9 w10"]
        np.testing.assert_allclose(clf.predict_proba(texts), run.models[t].predict_proba(texts), rtol=0, atol=1e-6)
        # and it still solves the task at this size: w0 marks a positive document, w1 a negative one
        assert clf.predict(texts) == ["pos", "neg", "pos", "neg"], (t, clf.predict_proba(texts))
        assert clf.model.config.transitions == run.models[t].model.config.transitions
    doc = json.loads((tmp_path / "out" / "path.json").read_text())
    assert set(doc["snapshots"]) == {"9", "6", "3"} and doc["epochs"]


def test_path_through_the_cli_and_a_missed_target(one_hot_vectors, tmp_path, capsys):  # noqa: F811
    from conftest import write_tsv

    files = {
        k: write_tsv(tmp_path / f"{k}.tsv", make_task("unigram", n, s))
        for k, n, s in (("train", 300, 1), ("dev", 60, 2))
    }
    base = [
        "train",
        "--train",
        str(files["train"]),
        "--dev",
        str(files["dev"]),
        "--embeddings",
        one_hot_vectors,
        "--patterns",
        "4x3",
        "--structure-search",
        "path",
        "--penalty-update",
        "proximal",
        "--lr",
        "0.05",
        "--epochs",
        "8",
        "--path-start",
        "1e-3",
        "--path-growth",
        "1.5",
        "--path-warmup",
        "1",
        "--quiet",
        "--threads",
        "1",
    ]
    assert main([*base, "--target-transitions", "9,4", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "target 9" in out and "target 4" in out
    assert (tmp_path / "p" / "t9" / "config.json").is_file() and (tmp_path / "p" / "path.png").is_file()
    # too few epochs for the last target: the reached ones are saved, the missed one named in one line
    code = main([*base, "--target-transitions", "9,1", "--reg-epochs", "1", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("sparse-rational: error: --target-transitions: the path missed 1")
    assert (tmp_path / "q" / "t9" / "config.json").is_file() and not (tmp_path / "q" / "t1").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--target-transitions", "0"], "--target-transitions"),
        (["--target-transitions", "8,8"], "twice"),
        (["--target-transitions", "8,x"], "--target-transitions"),
        (["--target-transitions", "13"], "--target-transitions"),
        (["--target-transitions", "8,4", "--structure-search", "lambda"], "path"),  # several targets need the path
        (["--structure-search", "path"], "--structure-search"),
        (["--path-growth", "1"], "--path-growth"),
    ],
)
def test_bad_path_options_are_one_line_errors(args, needle, one_hot_vectors, tmp_path, capsys):  # noqa: F811
    from conftest import write_tsv

    train = write_tsv(tmp_path / "train.tsv", make_task("unigram", 40, 1))
    code = main(
        [
            "train",
            "--train",
            str(train),
            "--embeddings",
            one_hot_vectors,
            "--patterns",
            "4x3",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
            *args,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tolerance", [None, 10])  # 10: each target's nearest step so far is pending for epochs
def test_a_path_killed_midway_resumes_to_the_same_snapshots(tolerance, one_hot_vectors, tmp_path):  # noqa: F811
    def go(ck):
        return train_structure_path(
            _splits(),
            [9, 6, 3],
            embeddings=one_hot_vectors,
            patterns="4x3",
            options=_path_options(search_tolerance=tolerance),
            verbose=False,
            checkpoint=ck,
        )

    counter = StopAfter(tmp_path / "count", "h", stop_after=-1, verbose=False)
    reference = go(counter)
    path_epochs = len(reference.path)
    for stop in sorted({2, path_epochs - 1, path_epochs + 1, counter.saves - 1}):
        ck = StopAfter(tmp_path / f"ck{stop}", "h", stop_after=stop, verbose=False)
        with pytest.raises(Interrupt):
            go(ck)
        resumed = go(Checkpointer(tmp_path / f"ck{stop}", "h", resume=True, verbose=False))
        assert resumed.snapshots == reference.snapshots, stop
        assert sorted(resumed.models) == sorted(reference.models)
        for t, clf in reference.models.items():
            other = resumed.models[t]
            for key in ("test_accuracy", "dev_accuracy", "structure", "epochs"):
                assert clf.metrics[key] == other.metrics[key], (stop, t, key)
            for k, v in clf.model.state_dict().items():
                torch.testing.assert_close(v, other.model.state_dict()[k], rtol=0, atol=0)


def test_a_single_target_along_the_path_is_one_model_folder(one_hot_vectors, tmp_path):  # noqa: F811
    opts = _path_options()
    clf = train_text_classifier(
        _splits(),
        embeddings=one_hot_vectors,
        patterns="4x3",
        target_transitions=4,
        options=RunOptions(
            opts.embeddings,
            opts.model,
            opts.train,
            opts.structure.__class__(**{**opts.structure.__dict__, "structure_search": "path"}),
        ),
        verbose=False,
    )
    assert abs(clf.metrics["transitions"] - 4) <= 2
    assert clf.metrics["search"] and all("reg_strength" in p for p in clf.metrics["search"])
    assert not math.isnan(clf.metrics["test_accuracy"])
    clf.save(tmp_path / "one")
    assert (tmp_path / "one" / "config.json").is_file()
    np.testing.assert_allclose(
        TextClassifier.load(tmp_path / "one").predict_proba(["w0 w4"]), clf.predict_proba(["w0 w4"]), atol=1e-6
    )


# -- where the path takes a target's snapshot ---------------------------------------------------


def _scripted_tracker(monkeypatch, targets, tolerance):
    """A tracker fed a scripted sequence of surviving sizes (one per step)."""
    import sparse_rational.learn as learn

    sizes: list[int] = []
    monkeypatch.setattr(learn, "surviving_structure", lambda model, eps: [sizes[-1]])
    opts = StructureOptions(target_transitions=tuple(targets), search_tolerance=tolerance)
    tracker = learn._PathTracker(opts, steps_per_epoch=4)
    model = RationalClassifier(ModelConfig((1,), 3, 2, vocab_size=4))

    def walk(path):
        for step, n in enumerate(path, 1):
            sizes.append(n)
            tracker.after_step(model, step, 1e-3 * step)
            if tracker.done():
                break
        tracker.finish()
        return {f"path/t{t}": info["transitions"] for t, (_, info) in tracker.snapshots.items()}

    return tracker, walk


def test_the_snapshot_is_the_step_nearest_to_the_target_not_the_bands_upper_edge(monkeypatch):
    # a path that sheds states one by one enters each band at its upper edge (30 for 20): the
    # earlier rule snapshotted there; the snapshot is now the step at the target itself
    tracker, walk = _scripted_tracker(monkeypatch, (80, 60, 40, 20), 10)
    got = walk(list(range(96, 0, -1)))
    assert got == {"path/t80": 80, "path/t60": 60, "path/t40": 40, "path/t20": 20}
    assert not tracker.missed and not tracker.near
    info = tracker.snapshots[20][1]
    assert info["band"] == [10, 30] and info["rule"] == "nearest" and info["step"] == 96 - 20 + 1


@pytest.mark.parametrize(
    "path,expected",
    [
        ([35, 27, 23, 18, 12], {"path/t20": 18}),  # passed between 23 and 18: 18 is nearer
        ([35, 22, 17, 5], {"path/t20": 22}),  # 22 is nearer than 17
        ([35, 21, 19, 5], {"path/t20": 21}),  # a tie goes to the earlier step (smaller lambda)
        ([35, 28, 26, 25], {"path/t20": 25}),  # the path ends inside the band: its nearest step
        ([35, 31, 8], {}),  # jumped over the whole band: missed
    ],
)
def test_the_nearest_step_along_a_path_that_jumps(monkeypatch, path, expected):
    tracker, walk = _scripted_tracker(monkeypatch, (20,), 10)
    assert walk(path) == expected
    assert list(tracker.missed) == ([] if expected else [20])


def test_a_band_wider_than_the_model_still_snapshots_near_each_target(one_hot_vectors):  # noqa: F811
    # +-10 around 9, 6 and 3 holds all 12 transitions of 4x3: the earlier rule took the first
    # step for every target (12 transitions each); the path now goes on to each target
    run = train_structure_path(
        _splits(),
        [9, 6, 3],
        embeddings=one_hot_vectors,
        patterns="4x3",
        options=_path_options(search_tolerance=10),
        verbose=False,
    )
    assert not run.missed, run.missed
    for t in (9, 6, 3):
        snap = run.snapshots[t]
        assert abs(snap["transitions"] - t) <= 1, (t, snap)
        assert run.models[t].model.config.transitions == snap["transitions"]
        assert snap["band"] == [max(0, t - 10), t + 10]


def test_a_checkpoint_of_the_earlier_path_snapshots_is_refused_in_one_line(tmp_path):
    from sparse_rational.errors import UserError
    from sparse_rational.phases import Phases

    ck = Checkpointer(tmp_path / "ck", "h", verbose=False)
    old = {"finished": {}, "last_finished": None, "stashed": {"path/near9": {"transitions": 9}}}
    ck.save("path", 1, {"rng.torch": torch.get_rng_state()}, old)  # snapshots kept apart from their phase
    with pytest.raises(UserError, match="earlier version") as err:
        Phases(Checkpointer(tmp_path / "ck", "h", resume=True, verbose=False))
    assert "\n" not in str(err.value)


def test_a_checkpoint_without_every_finished_phases_weights_is_refused_in_one_line(tmp_path):
    from sparse_rational.errors import UserError
    from sparse_rational.phases import Phases

    ck = Checkpointer(tmp_path / "ck", "h", verbose=False)
    old = {"finished": {"search:1": {"fit": {}}, "search:2": {"fit": {}}}, "last_finished": "search:2"}
    weights = {"rng.torch": torch.get_rng_state(), "kept.search:2/classifier.bias": torch.zeros(2)}
    ck.save("search:3", 1, weights, old)  # the earlier version kept the latest phase's weights only
    with pytest.raises(UserError, match="earlier version") as err:
        Phases(Checkpointer(tmp_path / "ck", "h", resume=True, verbose=False))
    assert "\n" not in str(err.value)

"""Stacked and bidirectional models: brute-force path sums layer by layer, both directions,
padding, the per-step kernels against the reference, configs (issue 16)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sparse_rational.errors import ParameterError
from sparse_rational.layout import StateLayout
from sparse_rational.learn import StructureOptions
from sparse_rational.model import ModelConfig, RationalClassifier
from sparse_rational.ops import (
    STEP_IMPLEMENTATIONS,
    cpp_available,
    rational_steps_ref,
    reverse_documents,
    transition_weights,
)
from sparse_rational.structure import format_structure, parse_stack
from sparse_rational.train import TrainConfig


def path_sum(u: torch.Tensor, f: torch.Tensor, n: int) -> torch.Tensor:
    """Sum over all paths of one chain WFSA (``u, f``: ``[T, n]``) that end in ``q_1..q_n``,
    by enumerating the 2^T stay/advance sequences."""
    total = torch.zeros((), dtype=u.dtype)
    for moves in itertools.product([0, 1], repeat=u.shape[0]):
        state, weight = 0, torch.ones((), dtype=u.dtype)
        for t, adv in enumerate(moves):
            if adv:
                state += 1
                if state > n:
                    break
                weight = weight * u[t, state - 1]
            elif state > 0:
                weight = weight * f[t, state - 1]
        else:
            if state >= 1:
                total = total + weight
    return total


def brute_layer(x: torch.Tensor, layer, every_step: bool) -> torch.Tensor:
    """One document ``x [L, e]`` through one WFSA layer by enumeration: ``[L, d]`` per-step
    scores (the score of the prefix ending at each step) or ``[d]`` the final scores."""
    u, f = transition_weights(x[:, None], layer.w, layer.v, layer.b)
    u, f = u[:, 0], f[:, 0]
    out = []
    for a, b in layer.layout.slices:
        n = b - a
        if every_step:
            out.append(torch.stack([path_sum(u[: t + 1, a:b], f[: t + 1, a:b], n) for t in range(x.shape[0])]))
        else:
            out.append(path_sum(u[:, a:b], f[:, a:b], n))
    return torch.stack(out, dim=-1)


def brute_logits(model: RationalClassifier, x: torch.Tensor) -> torch.Tensor:
    """Logits of one document ``x [L, e]``, layer by layer, each direction enumerated."""
    cfg = model.config
    layers = model.wfsa_layers()
    for k in range(cfg.layers):
        outs = []
        for _, direction, layer in (m for m in layers if m[0] == k):
            xin = x if direction == "forward" else x.flip(0)
            y = brute_layer(xin, layer, every_step=k < cfg.layers - 1)
            outs.append(y if direction == "forward" or k == cfg.layers - 1 else y.flip(0))
        x = torch.cat(outs, dim=-1)
    return model.classifier(x)


def tiny_model(layers=2, bidirectional=True, stack=(), structure=(2, 1), e=3, seed=0) -> RationalClassifier:
    torch.manual_seed(seed)
    cfg = ModelConfig(structure, e, 2, readout="final", layers=layers, bidirectional=bidirectional, stack=stack)
    model = RationalClassifier(cfg).double().eval()
    with torch.no_grad():
        for _, _, layer in model.wfsa_layers():
            layer.b.normal_()
            layer.w.mul_(2)
    return model


@pytest.mark.parametrize(
    "layers,bidirectional,stack",
    [(2, False, ()), (1, True, ()), (2, True, ()), (3, True, (((2, 1), (1,)), ((1, 2), (2,)), ((1,), (1, 1))))],
)
def test_stacked_model_equals_brute_force_layer_by_layer(layers, bidirectional, stack, one_thread):
    model = tiny_model(layers, bidirectional, stack)
    lengths = [4, 2, 3]
    T = max(lengths)
    x = torch.randn(len(lengths), T, 3, dtype=torch.float64)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    x = x * mask[..., None]  # padding holds zeros (any value must do: see the padding test)
    got = model.forward_vectors(x, mask)
    for b, L in enumerate(lengths):
        torch.testing.assert_close(got[b], brute_logits(model, x[b, :L]), rtol=1e-10, atol=1e-12)


def test_padding_never_counts_and_batched_equals_unbatched(one_thread):
    model = tiny_model(2, True)
    lengths = [5, 1, 3]
    T = max(lengths)
    x = torch.randn(len(lengths), T, 3, dtype=torch.float64)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 10)  # garbage at padding
    got = model.forward_vectors(noisy, mask)
    for b, L in enumerate(lengths):
        alone = model.forward_vectors(x[b : b + 1, :L], torch.ones(1, L, dtype=torch.bool))
        torch.testing.assert_close(got[b : b + 1], alone, rtol=1e-10, atol=1e-12)


def test_backward_direction_reads_the_document_reversed(one_thread):
    """A bidirectional layer's backward WFSAs score a document as the forward WFSAs (same
    weights) score it reversed: the two directions are not the same function."""
    model = tiny_model(1, True)
    with torch.no_grad():
        bwd = model.upper["l0_backward"]
        bwd.w.copy_(model.wfsa.w), bwd.v.copy_(model.wfsa.v), bwd.b.copy_(model.wfsa.b)
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    scores = model.scores(x, mask)[0]
    d = len(model.config.structure)
    fwd_of_reversed = model.wfsa(x.flip(1).transpose(0, 1))[0]
    torch.testing.assert_close(scores[d:], fwd_of_reversed)
    assert not torch.allclose(scores[:d], scores[d:])


def test_reverse_documents_keeps_padding_at_the_end():
    x = torch.arange(8.0).view(4, 2, 1)  # [T, B, 1]: doc 0 = 0,2,4,6; doc 1 = 1,3 then padding
    mask = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0]], dtype=torch.bool)
    r = reverse_documents(x, mask)
    assert r[:, 0, 0].tolist() == [6, 4, 2, 0]
    assert r[:, 1, 0].tolist() == [3, 1, 5, 7]
    torch.testing.assert_close(reverse_documents(r, mask), x)


def _step_inputs(structure, T=6, B=4, e=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = sum(structure)
    x = torch.randn(T, B, e, generator=g, dtype=torch.float64)
    w = torch.randn(e, N, generator=g, dtype=torch.float64)
    v = torch.randn(e, N, generator=g, dtype=torch.float64)
    b = torch.randn(N, generator=g, dtype=torch.float64)
    lengths = torch.tensor([T, 1, T - 2, 3][:B])
    mask = torch.arange(T)[:, None] < lengths[None, :]
    return x, w, v, b, StateLayout.of(tuple(structure)), mask


@pytest.mark.parametrize("impl", sorted(set(STEP_IMPLEMENTATIONS) - {"reference"}))
@pytest.mark.parametrize("structure", [(1,), (3, 1, 2), (4, 4, 2, 1)])
@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_step_kernels_equal_the_reference(impl, structure, pad, reverse, one_thread):
    if impl == "cpp" and not cpp_available():
        pytest.skip("C++ kernel did not build")
    x, w, v, b, layout, mask = _step_inputs(structure)
    mask = mask if pad else None
    if reverse:  # what a backward WFSA reads
        x = reverse_documents(x, mask)
    leaves = [t.clone().requires_grad_() for t in (x, w, v, b)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, v, b)]
    out = STEP_IMPLEMENTATIONS[impl](*leaves, layout, mask)
    ref = rational_steps_ref(*ref_leaves, layout, mask)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    if mask is not None:
        assert (out[~mask] == 0).all()
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    got = torch.autograd.grad(out, leaves, g)
    want = torch.autograd.grad(ref, ref_leaves, g)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


def test_one_layer_config_is_saved_as_before():
    cfg = ModelConfig((4, 2), 5, 2)
    assert set(cfg.to_dict()) == {
        "structure",
        "embedding_dim",
        "num_classes",
        "vocab_size",
        "dropout",
        "input_dropout",
        "readout",
    }
    assert cfg.structure_record() == [4, 2]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_stacked_config_round_trip_and_record():
    cfg = ModelConfig((2,), 5, 3, layers=2, bidirectional=True, stack=(((2,), (1, 1)), ((3,), (1,))))
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.structure_record() == {
        "layers": [{"forward": [2], "backward": [1, 1]}, {"forward": [3], "backward": [1]}]
    }
    assert cfg.transitions == 8 and cfg.num_scores == 2 and cfg.layer_input_dim(1) == 3
    assert format_structure(cfg.structure_record()) == "layer 1: 1x2 + backward 2x1; layer 2: 1x3 + backward 1x1"
    with pytest.raises(ValueError):
        ModelConfig((2,), 5, 3, layers=2, stack=(((2,),),))


def test_patterns_per_layer():
    assert parse_stack("2x4/3x1", 2) == ((4, 4), (1, 1, 1))
    assert parse_stack("2x4", 3) == ((4, 4),) * 3
    with pytest.raises(ParameterError, match="layers is 3"):
        parse_stack("2x4/3x1", 3)


def _zero_groups(model: RationalClassifier, zeros: dict[tuple[int, str], list[int]]) -> None:
    """Set the groups of the given states (per layer and direction) to exactly zero."""
    with torch.no_grad():
        for k, direction, layer in model.wfsa_layers():
            for s in zeros.get((k, direction), []):
                layer.w[:, s] = 0
                layer.v[:, s] = 0
                layer.b[s] = 0


def test_pruning_a_stack_preserves_the_logits_and_removes_the_rows_above(one_thread):
    from sparse_rational.structure import prune

    cfg = ModelConfig((3, 1, 2), 4, 3, readout="max", layers=2, bidirectional=True, stack=(), dropout=0.0)
    torch.manual_seed(0)
    model = RationalClassifier(cfg).double().eval()
    # layer 1 forward: WFSA 1 (states 3) dies whole, WFSA 0 keeps 1 state (state 1 zero);
    # layer 1 backward: WFSA 2 (states 4, 5) dies; layer 2 forward: WFSA 0 keeps 2 of 3.
    _zero_groups(model, {(0, "forward"): [1, 3], (0, "backward"): [4, 5], (1, "forward"): [2]})
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 4])[:, None]
    before = model.forward_vectors(x, mask)
    result = prune(model, 0.1)
    small = result.model
    assert small.config.structure_record() == {
        "layers": [{"forward": [1, 2], "backward": [3, 1]}, {"forward": [2, 1, 2], "backward": [3, 1, 2]}]
    }
    # layer 2 reads 4 scores instead of 6: the dead WFSAs' rows are gone
    assert small.upper["l1_forward"].w.shape == (4, 5) and small.upper["l1_backward"].w.shape == (4, 6)
    assert small.config.transitions == sum(small.config.all_lengths) == 18
    assert len(result.group_norms) == 12
    torch.testing.assert_close(small.forward_vectors(x, mask), before, rtol=1e-12, atol=1e-12)
    # a group that is not zero but small is removed too: the logits change (the test can fail)
    with torch.no_grad():
        model.wfsa.w[:, 3] = 1e-3
    assert not torch.allclose(prune(model, 0.1).model.forward_vectors(x, mask), model.forward_vectors(x, mask))


def test_a_layer_pruned_to_nothing_ends_the_stack(one_thread, caplog):
    from sparse_rational.structure import prune, surviving_structure

    cfg = ModelConfig((2, 1), 4, 2, layers=2, stack=(), dropout=0.0)
    torch.manual_seed(0)
    model = RationalClassifier(cfg).double().eval()
    _zero_groups(model, {(1, "forward"): [0, 2]})  # every first state of layer 2
    assert surviving_structure(model, 0.1) == ()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    with caplog.at_level("WARNING"):
        small = prune(model, 0.1).model
    assert "layer 2 was pruned to nothing" in caplog.text
    assert small.config.transitions == 0 and small.num_parameters() == 2  # the classifier's bias
    torch.testing.assert_close(small.forward_vectors(x, mask), model.forward_vectors(x, mask))


def test_group_lasso_and_the_proximal_step_cover_every_layer(one_thread):
    from sparse_rational.structure import group_soft_threshold_, proximal_step_

    cfg = ModelConfig((2, 1), 4, 2, layers=2, bidirectional=True)
    model = RationalClassifier(cfg).double()
    layers = model.wfsa_layers()
    want = sum(float(m.group_norms().sum().detach()) for _, _, m in layers)
    assert abs(float(model.penalty().detach()) - want) < 1e-9 and len(layers) == 4
    n = sum(m.b.shape[0] for _, _, m in layers)
    group_soft_threshold_(model, torch.full((n,), 100.0, dtype=torch.float64))  # kills every group
    assert all(float(m.group_norms().max().detach()) == 0 for _, _, m in layers)
    model = RationalClassifier(cfg).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    proximal_step_(model, opt, 0.1)  # every group shrinks by lr * lambda
    for (_, _, new), (_, _, old) in zip(model.wfsa_layers(), RationalClassifier(cfg).double().wfsa_layers()):
        assert (new.group_norms() < 10).all() and new.group_norms().shape == old.group_norms().shape


def _first_token_task(n: int, seed: int, e: int = 6, vocab_size: int = 20):
    """Documents of 6-12 random tokens (a fixed vocabulary of unit vectors with a constant
    feature); the label is the sign of feature 1 of the document's *first* token."""
    g = torch.Generator().manual_seed(0)
    vocab = torch.randn(vocab_size, e, generator=g)
    vocab[:, 0] = 1.0
    vocab = vocab / vocab.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, 13, (n,), generator=g)
    T = int(lengths.max())
    ids = torch.randint(0, vocab_size, (n, T), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    return vocab[ids] * mask[..., None], mask, (vocab[ids[:, 0], 1] > 0).long()


def _fit_first_token(layers: int, bidirectional: bool, patterns: tuple[tuple[int, ...], ...]) -> tuple[float, float]:
    train, test = _first_token_task(1024, 1), _first_token_task(512, 2)
    torch.manual_seed(0)
    ndir = 2 if bidirectional else 1
    stack = tuple((p,) * ndir for p in patterns) if layers > 1 or bidirectional else ()
    cfg = ModelConfig(
        patterns[0], 6, 2, dropout=0.0, input_dropout=0.0, readout="final", layers=layers,
        bidirectional=bidirectional, stack=stack,
    )  # fmt: skip
    model = RationalClassifier(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(model.forward_vectors(train[0], train[1]), train[2])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return tuple(  # type: ignore[return-value]
            float((model.forward_vectors(x, m).argmax(1) == y).float().mean()) for x, m, y in (train, test)
        )


def test_first_token_task_needs_a_second_direction_or_layer(one_thread):
    """The label is the first token's. A left-to-right layer's final score sums over paths
    that may start at any token (q_0's self-loop weighs 1), so no path knows it began at
    the first one: at 4 transitions, trained the same way, one left-to-right layer cannot
    even fit the training set. Read right to left, the first token is the last one read
    (bidirectional, 2 unigrams a direction); two stacked left-to-right layers of 2 unigrams
    solve it too (the lower layer's per-step scores tell the upper layer where the document
    begins)."""
    for patterns in [((1, 1, 1, 1),), ((4,),)]:
        fit, test = _fit_first_token(1, False, patterns)
        assert fit < 0.9 and test < 0.9, (patterns, fit, test)
    for layers, bidirectional, patterns in [(1, True, ((1, 1),)), (2, False, ((1, 1), (1, 1)))]:
        fit, test = _fit_first_token(layers, bidirectional, patterns)
        assert test > 0.95, (layers, bidirectional, fit, test)


@pytest.fixture(scope="module")
def stacked_model(tiny_files, tmp_path_factory):
    """A 2-layer bidirectional model trained by the CLI on the tiny kitchen files."""
    from conftest import tiny_args

    from sparse_rational.cli import main

    out = tmp_path_factory.mktemp("deep") / "m"
    argv = ["train", *tiny_args(tiny_files), "--patterns", "2x2,1x1", "--layers", "2", "--bidirectional"]
    assert main([*argv, "--epochs", "2", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_stacked_model_saves_loads_and_records_its_layers(stacked_model):
    import json

    from sparse_rational.pipeline import TextClassifier

    metrics = json.loads((stacked_model / "metrics.json").read_text())
    record = {"forward": [2, 2, 1], "backward": [2, 2, 1]}
    assert metrics["structure"] == {"layers": [record, record]} and metrics["transitions"] == 20
    clf = TextClassifier.load(stacked_model)
    assert clf.model.config.layers == 2 and clf.model.config.bidirectional
    assert clf.model.upper["l1_backward"].w.shape == (6, 5)
    texts = ["works great , i love it", "it broke"]
    again = TextClassifier.load(stacked_model)
    np.testing.assert_array_equal(clf.predict_proba(texts), again.predict_proba(texts))


def test_readme_numpy_scorer_runs_a_stacked_model(stacked_model, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    from sparse_rational.cli import main
    from sparse_rational.data import tokenize
    from sparse_rational.pipeline import TextClassifier

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(stacked_model), "--out", "mine.json"]) == 0
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "mine.json" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    clf = TextClassifier.load(stacked_model)
    texts = ["Works great , I love it", "it broke and the company would not refund me"]
    for text, p in zip(texts, clf.predict_proba(texts)):
        got = namespace["probabilities"](tokenize(text))
        np.testing.assert_allclose([got[c] for c in clf.classes], p, atol=1e-5)


def test_explain_a_stacked_model(stacked_model, tiny_files, capsys):
    from sparse_rational.cli import main
    from sparse_rational.explain.documents import encode_documents
    from sparse_rational.explain.stacked import explain_stacked
    from sparse_rational.pipeline import TextClassifier

    text = "works great , i love it"
    assert main(["explain", "--model", str(stacked_model), "--train", str(tiny_files["train"]), "--doc", text]) == 0
    out = capsys.readouterr().out
    assert "Patterns of" in out and "of the first layer, left to right (3 WFSAs, 5 transitions)" in out
    assert out.count("first layer, left to right (its per-step scores feed the layer above)") == 3
    assert "Top layer (layer 2)" in out and "backward 3" in out
    clf = TextClassifier.load(stacked_model)
    exp = explain_stacked(clf, encode_documents(clf, [text]))[0]
    assert len(exp.items) == 6
    for c in range(len(clf.classes)):  # the contributions and the bias make the logits
        total = exp.bias[c] + sum(it.contributions[c] for it in exp.items)
        assert abs(total - exp.logits[c]) < 1e-5
    np.testing.assert_allclose(exp.probabilities, clf.predict_proba([text])[0], atol=1e-5)
    assert (
        main(["explain", "--model", str(stacked_model), "--train", str(tiny_files["train"]), "--html", "r.html"]) == 2
    )


def test_stacked_structure_learning_resumes_to_the_uninterrupted_result(tmp_path_factory, one_thread):
    """Penalise -> prune -> finetune a 2-layer bidirectional model, interrupted after a
    checkpoint in the penalised phase and in finetuning, resumes to the same weights."""
    from test_reliability_helpers import SPLITS, Interrupt, StopAfter, onehot_vectors, same_result

    from sparse_rational.checkpoint import Checkpointer
    from sparse_rational.config import ModelOptions, RunOptions
    from sparse_rational.pipeline import train_text_classifier

    vectors = onehot_vectors(tmp_path_factory)
    options = RunOptions(
        model=ModelOptions(patterns="2x2", layers=2, bidirectional=True, readout="max", vectors="frozen")
    )
    opts = StructureOptions(reg_strength=0.01, reg_epochs=3, epsilon=0.3, penalty_update="proximal")
    cfg = TrainConfig(epochs=4, patience=4, batch_size=16, lr=0.05, seed=3)

    def run(checkpoint):
        return train_text_classifier(
            SPLITS, vectors, options=options, train_config=cfg, structure_options=opts, verbose=False,
            checkpoint=checkpoint,
        )  # fmt: skip

    root = tmp_path_factory.mktemp("ck")
    counter = StopAfter(root / "count", "h", stop_after=-1, verbose=False)
    reference = run(counter)
    assert 0 < reference.metrics["transitions"] < 16 and isinstance(reference.metrics["structure"], dict)

    def no_seconds(clf):  # wall times and dates differ between runs
        for h in clf.metrics.history or []:
            h.pop("seconds", None)
        clf.metrics.provenance = None
        return clf

    for stop in (2, counter.saves - 1):
        with pytest.raises(Interrupt):
            run(StopAfter(root / f"ck{stop}", "h", stop_after=stop, verbose=False))
        resumed = run(Checkpointer(root / f"ck{stop}", "h", resume=True, verbose=False))
        same_result(no_seconds(reference), no_seconds(resumed))


@pytest.mark.parametrize("pad", [False, True])
def test_triton_step_kernel_equals_the_reference(pad, one_thread):
    """Runs under Triton's interpreter on the CPU (conftest sets TRITON_INTERPRET=1 without
    CUDA), on CUDA where there is one."""
    from sparse_rational.ops.gpu import triton_importable

    if not triton_importable():
        pytest.skip("triton is not installed")
    from sparse_rational.ops.gpu import rational_steps_triton

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, w, v, b, layout, mask = _step_inputs((3, 1, 2), T=5, B=3)
    mask = mask if pad else None
    x = reverse_documents(x, mask)
    leaves = [t.clone().to(device).requires_grad_() for t in (x, w, v, b)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, v, b)]
    out = rational_steps_triton(*leaves, layout, None if mask is None else mask.to(device))
    ref = rational_steps_ref(*ref_leaves, layout, mask)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-11)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    got = torch.autograd.grad(out, leaves, g.to(device))
    want = torch.autograd.grad(ref, ref_leaves, g)
    for a, r in zip(got, want):
        torch.testing.assert_close(a.cpu(), r, rtol=1e-9, atol=1e-11)


def test_predict_command_reads_a_stacked_model_through_pytorch(stacked_model, tmp_path, capsys):
    """The PyTorch-free predict path folds one left-to-right layer only: a stacked model
    must take the PyTorch model, and give the API's probabilities."""
    import json

    import numpy as np

    from sparse_rational.cli import main
    from sparse_rational.folded import is_static_model
    from sparse_rational.pipeline import TextClassifier

    assert not is_static_model(stacked_model)
    texts = ["works great , love it", "broke after a week", ""]
    path = tmp_path / "t.txt"
    path.write_text("".join(t + "\n" for t in texts))
    capsys.readouterr()
    assert main(["predict", "--model", str(stacked_model), str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clf = TextClassifier.load(stacked_model)
    assert clf.folded() is None
    expected = clf.predict_proba(texts)
    got = np.array([list(r["probabilities"].values()) for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [r["known_tokens"] for r in rows] == clf.known_tokens(texts).tolist()

"""The WFSA dynamic program against brute force, padding, pruning, the semirings."""

import itertools

import pytest
import torch

from sparse_rational.errors import UserError
from sparse_rational.model import ModelConfig, RationalClassifier, WFSALayer, state_layout
from sparse_rational.ops import semiring_dp, transition_weights
from sparse_rational.semiring import MAX_TIMES, MIN_TIMES
from sparse_rational.structure import format_structure, parse_patterns, prune


def path_scores(u, f, n):
    """All path scores of one chain WFSA (u, f: [T, n] for one document), by enumeration.

    A path reads x_1..x_T; at each token it stays (q_0: weight 1; q_i: self-loop f_i) or
    advances q_{i-1} -> q_i (weight u_i). Only paths ending in q_1..q_n count.
    """
    T = u.shape[0]
    out = []
    for moves in itertools.product([0, 1], repeat=T):
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
                out.append(weight)
    return torch.stack(out)


@pytest.mark.parametrize("structure", [(1,), (3,), (4, 4, 2, 1), (1, 3, 2)])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_forward_equals_brute_force(structure, T):
    torch.manual_seed(sum(structure) * 10 + T)
    e, B = 5, 2
    layer = WFSALayer(structure, e).double()
    with torch.no_grad():
        layer.b.normal_()
    x = torch.randn(T, B, e, dtype=torch.float64)
    scores = layer(x)
    u, f = transition_weights(x, layer.w, layer.v, layer.b)
    start = 0
    for j, n in enumerate(structure):
        for b in range(B):
            paths = path_scores(u[:, b, start : start + n], f[:, b, start : start + n], n)
            torch.testing.assert_close(scores[b, j], paths.sum())
        start += n


@pytest.mark.parametrize("structure", [(2,), (4, 1, 3)])
def test_max_and_min_times_equal_brute_force_with_negative_weights(structure):
    torch.manual_seed(0)
    T, B, N = 5, 3, sum(structure)
    u = torch.randn(T, B, N, dtype=torch.float64) * 2  # signed main-path weights
    f = torch.rand(T, B, N, dtype=torch.float64)
    is_first, _ = state_layout(structure)
    best = MAX_TIMES.value(semiring_dp(u, f, is_first, semiring=MAX_TIMES))
    worst = MIN_TIMES.value(semiring_dp(u, f, is_first, semiring=MIN_TIMES))
    start = 0
    for n in structure:
        for b in range(B):
            paths = path_scores(u[:, b, start : start + n], f[:, b, start : start + n], n)
            # best path ending in any final state = max over the states' best values
            torch.testing.assert_close(best[b, start : start + n].max(), paths.max())
            torch.testing.assert_close(worst[b, start : start + n].min(), paths.min())
        start += n


def test_padded_batch_equals_each_document_alone():
    torch.manual_seed(1)
    cfg = ModelConfig(structure=(4, 2, 1), embedding_dim=6, num_classes=3, vocab_size=0)
    model = RationalClassifier(cfg).double().eval()
    lengths = [7, 3, 1, 5]
    docs = [torch.randn(n, 6, dtype=torch.float64) for n in lengths]
    T = max(lengths)
    batch = torch.zeros(len(docs), T, 6, dtype=torch.float64)
    mask = torch.zeros(len(docs), T, dtype=torch.bool)
    for i, d in enumerate(docs):
        batch[i, : len(d)] = d
        batch[i, len(d) :] = torch.randn(T - len(d), 6)  # garbage in the padding must not matter
        mask[i, : len(d)] = True
    together = model.forward_vectors(batch, mask)
    for i, d in enumerate(docs):
        alone = model.forward_vectors(d[None], torch.ones(1, len(d), dtype=torch.bool))
        torch.testing.assert_close(together[i], alone[0])


def test_prune_keeps_logits_when_removed_groups_are_zero():
    torch.manual_seed(2)
    cfg = ModelConfig(structure=(4, 4, 2, 1), embedding_dim=8, num_classes=2, vocab_size=0)
    model = RationalClassifier(cfg).double().eval()
    # zero: WFSA0 states 3,4 (keeps 2), WFSA1 states 1,2 (keeps 0 -> removed), WFSA2 state 2 (keeps 1)
    with torch.no_grad():
        for s in [2, 3, 4, 5, 9]:
            model.wfsa.w[:, s] = 0
            model.wfsa.v[:, s] = 0
            model.wfsa.b[s] = 0
        model.wfsa.w[:, 6] = 0  # a zero w but non-zero v: the group is not zero, it stays
    x = torch.randn(3, 9, 8, dtype=torch.float64)
    mask = torch.ones(3, 9, dtype=torch.bool)
    before = model.forward_vectors(x, mask)
    result = prune(model, 0.1)
    assert result.model.config.structure == (2, 1, 1)
    assert result.kept_wfsas == [0, 2, 3]
    assert result.kept_states == [0, 1, 8, 10]
    assert result.model.wfsa.w.shape == (8, 4)
    assert result.model.classifier.weight.shape == (2, 3)
    assert result.model.num_parameters() < model.num_parameters()
    torch.testing.assert_close(result.model.forward_vectors(x, mask), before)


def test_prune_everything_gives_an_empty_model_that_predicts_the_bias():
    cfg = ModelConfig(structure=(2, 1), embedding_dim=4, num_classes=2, vocab_size=0)
    model = RationalClassifier(cfg).eval()
    with torch.no_grad():
        model.wfsa.w.zero_()
        model.wfsa.v.zero_()
        model.wfsa.b.zero_()
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2]))
    small = prune(model).model
    assert small.config.structure == ()
    logits = small.forward_vectors(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(logits, torch.tensor([[0.3, -0.2], [0.3, -0.2]]))


def test_parse_patterns():
    assert parse_patterns("24x4") == (4,) * 24
    assert parse_patterns("1x1, 2x3") == (1, 3, 3)
    assert format_structure((4, 4, 2, 1)) == "2x4,1x2,1x1"
    for bad in ["", "24", "x4", "0x4", "4x0", "24x4,", "ax2", "2x-1"]:
        with pytest.raises(UserError, match="^patterns: "):
            parse_patterns(bad)

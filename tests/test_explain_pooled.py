"""Explanations that follow the readout (issue 17, item 3).

For models that pool their states over the document (``mean``, ``max``): Table 1's spans
end anywhere (against brute force over every path ending at every token, float64), the
parts of a document's WFSA scores sum to the scores (``mean``: each token t adds exactly
``(1/L) sum_i c_i(t)``; ``max``: state q_i adds ``c_i`` at its argmax token), and, for every
readout, documents that read the same phrase are merged with a count.
"""

import copy
import dataclasses
import io
import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from sparse_rational.data import Example, Splits
from sparse_rational.explain import cli as explain_cli
from sparse_rational.explain.paths import NOT_READ, decode_paths, max_min_scores, path_score, wfsa_slices
from sparse_rational.explain.report import render_report
from sparse_rational.explain.table import (
    PatternSummary,
    Phrase,
    encode_documents,
    explain_documents,
    format_explanation,
    format_table,
    summarize_patterns,
)
from sparse_rational.model import state_layout
from sparse_rational.pipeline import train_text_classifier
from sparse_rational.train import TrainConfig

VOCAB = [f"w{i}" for i in range(16)]


# -- brute force -------------------------------------------------------------------------
def paths_ending_anywhere(u: np.ndarray, f: np.ndarray, real: list[int], n: int):
    """Every path of a chain WFSA with ``n`` states that ends at a real token ``t`` in a state
    ``1..n``: ``(t, i, states, score)``. ``u, f``: ``[T, n]``; ``real``: the real positions
    (in order); ``states`` has ``T`` entries, ``NOT_READ`` at padding and after ``t``."""
    T = u.shape[0]
    for e, t in enumerate(real):
        read = real[: e + 1]
        for i in range(1, n + 1):
            for trans in itertools.combinations(read, i):
                states, score, k = [NOT_READ] * T, 1.0, 0
                for s in read:
                    if k < i and s == trans[k]:
                        k += 1
                        score *= u[s, k - 1]
                    elif k > 0:
                        score *= f[s, k - 1]
                    states[s] = k
                yield t, i, tuple(states), score


@pytest.mark.parametrize("structure", [(1,), (2,), (3,), (3, 1, 2)])
@pytest.mark.parametrize("T", [1, 2, 4, 6])
def test_best_and_worst_spans_anywhere_equal_brute_force(structure, T):
    torch.manual_seed(7 * T + sum(structure))
    B, N = 3, sum(structure)
    u = torch.randn(T, B, N, dtype=torch.float64) * 2  # signed
    f = torch.rand(T, B, N, dtype=torch.float64)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[max(T - 2, 1) :, 1] = False  # a shorter document, right-padded
    is_first, owner = state_layout(structure)
    paths = decode_paths(u, f, is_first, mask, anywhere=True)
    best, worst = max_min_scores(u, f, is_first, owner, mask, anywhere=True)
    end_best, _ = max_min_scores(u, f, is_first, owner, mask)
    for b in range(B):
        real = torch.nonzero(mask[:, b]).flatten().tolist()
        for j, (start, n) in enumerate(wfsa_slices(is_first)):
            uj, fj = u[:, b, start : start + n].numpy(), f[:, b, start : start + n].numpy()
            scores = {states: score for _, _, states, score in paths_ending_anywhere(uj, fj, real, n)}
            hi, lo = max(scores.values()), min(scores.values())
            for kind, target in (("best", hi), ("worst", lo)):
                p = paths[(b, j, kind)]
                assert p.states in scores, p  # a valid path, ending at some real token
                assert path_score(uj, fj, p.states) == pytest.approx(target, rel=1e-12, abs=1e-12)
                assert p.score == pytest.approx(target, rel=1e-12, abs=1e-12)
            assert float(best[b, j]) == pytest.approx(hi, rel=1e-12, abs=1e-12)
            assert float(worst[b, j]) == pytest.approx(lo, rel=1e-12, abs=1e-12)
            assert float(best[b, j]) >= float(end_best[b, j])  # the end is one of the places


# -- small trained models ----------------------------------------------------------------
def make_task(n: int, seed: int) -> list[Example]:
    """As tests/test_structure_learning.py ``make_task("bigram")``: w2 then w3 in every
    document, positive iff adjacent."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(VOCAB[4:], size=rng.integers(4, 8)))
        if label:
            k = rng.integers(0, len(words) + 1)
            words[k:k] = ["w2", "w3"]
        else:
            k = rng.integers(0, len(words) - 1)
            words.insert(k, "w2")
            words.insert(rng.integers(k + 2, len(words) + 1), "w3")
        out.append(Example(" ".join(words), "pos" if label else "neg"))
    return out


@pytest.fixture(scope="module")
def one_hot(tmp_path_factory):
    path = tmp_path_factory.mktemp("vec") / "onehot.txt"
    eye = np.eye(len(VOCAB))
    path.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(VOCAB, eye)))
    return str(path)


@pytest.fixture(scope="module", params=["final", "mean", "max"])
def model(request, one_hot, tmp_path_factory):
    """A 2x2,1x1 model on the bigram task with the given readout, and a float64 copy."""
    torch.set_num_threads(1)
    splits = Splits(make_task(200, 1), make_task(60, 2), make_task(60, 3))
    cfg = TrainConfig(epochs=12, patience=12, batch_size=32, lr=0.05, seed=0)
    clf = train_text_classifier(
        splits,
        one_hot,
        "2x2,1x1",
        train_config=cfg,
        dropout=0.0,
        input_dropout=0.0,
        verbose=False,
        readout=request.param,
    )
    assert clf.model.config.readout == request.param
    clf64 = dataclasses.replace(clf, model=copy.deepcopy(clf.model).double())
    folder = clf.save(tmp_path_factory.mktemp("m") / "model")
    return {"clf": clf, "clf64": clf64, "splits": splits, "readout": request.param, "dir": folder}


def doc_weights(clf, doc) -> tuple[np.ndarray, np.ndarray]:
    """``u, f``: ``[L, N]`` float64, from the formula (docs/DESIGN.md, 'The model')."""
    m = clf.model
    x = m.embeddings[doc.ids].double()
    w, v, b = m.wfsa.w.detach().double(), m.wfsa.v.detach().double(), m.wfsa.b.detach().double()
    f = torch.sigmoid(x @ v + b)
    return ((x @ w) * (1 - f)).numpy(), f.numpy()


def wfsa_paths(clf, doc, j):
    """Brute force: every path of WFSA ``j`` in ``doc`` ending anywhere, and the ``u, f`` of its states."""
    u, f = doc_weights(clf, doc)
    start, n = wfsa_slices(clf.model.wfsa.is_first)[j]
    uj, fj = u[:, start : start + n], f[:, start : start + n]
    return list(paths_ending_anywhere(uj, fj, list(range(len(doc))), n)), uj, fj


def model_scores(clf, doc) -> np.ndarray:
    m = clf.model
    with torch.no_grad():
        x = m.embeddings[doc.ids].double()[None]
        return m.scores(x, torch.ones(1, len(doc), dtype=torch.bool))[0].numpy()


def test_table1_spans_follow_the_readout_against_brute_force(model):
    clf = model["clf64"]
    docs = encode_documents(clf, model["splits"].train[:40])
    patterns = summarize_patterns(clf, docs, k=3)
    structure = clf.model.config.structure
    assert [p.length for p in patterns] == list(structure)
    for p in patterns:
        everything = [(i, *path) for i, d in enumerate(docs) for path in wfsa_paths(clf, d, p.wfsa)[0]]
        if model["readout"] == "final":  # the paper's: only paths that end at </s>
            everything = [e for e in everything if e[1] == len(docs[e[0]]) - 1]
        hi = max(e[4] for e in everything)
        lo = min(e[4] for e in everything)
        assert p.top[0].score == pytest.approx(hi, rel=1e-10, abs=1e-12)
        assert p.bottom[0].score == pytest.approx(lo, rel=1e-10, abs=1e-12)
        for ph in p.top + p.bottom:  # every row is a real path of its document with that score
            mine = {e[3]: e[4] for e in everything if e[0] == ph.doc}
            assert ph.path.states in mine
            assert mine[ph.path.states] == pytest.approx(ph.score, rel=1e-10, abs=1e-12)
        assert [ph.score for ph in p.top] == sorted((ph.score for ph in p.top), reverse=True)
        assert [ph.score for ph in p.bottom] == sorted(ph.score for ph in p.bottom)


def test_duplicate_phrases_are_merged_with_their_count(model):
    clf = model["clf64"]
    texts = ["w5 w2 w3 w7"] * 6 + ["w2 w3 w9"] * 3 + ["w9 w2 w3"] * 2 + [ex.text for ex in model["splits"].train[:14]]
    docs = encode_documents(clf, texts)
    k = 3
    patterns = summarize_patterns(clf, docs, k=k)
    for p in patterns:
        for kind, rows in (("best", p.top), ("worst", p.bottom)):
            # expected, by brute force: each document's own best (worst) path, ranked, grouped by its cells
            own = []
            for i, d in enumerate(docs):
                paths = wfsa_paths(clf, d, p.wfsa)[0]
                if model["readout"] == "final":
                    paths = [e for e in paths if e[0] == len(d) - 1]
                pick = max if kind == "best" else min
                _, _, states, score = pick(paths, key=lambda e: e[3])
                own.append(
                    (
                        score,
                        i,
                        tuple(Phrase(i, dataclasses.replace(rows[0].path, states=states), d.tokens).cells(p.length)),
                    )
                )
            counts = Counter(key for _, _, key in own)
            own.sort(key=lambda e: -e[0] if kind == "best" else e[0])
            expected = list(dict.fromkeys(key for _, _, key in own))[:k]
            assert [tuple(ph.cells(p.length)) for ph in rows] == expected
            assert [ph.count for ph in rows] == [counts[key] for key in expected]
            for ph in rows:  # the row shows the best-scoring document of its phrase
                assert ph.score == pytest.approx(
                    max(s for s, _, key in own if key == tuple(ph.cells(p.length)))
                    if kind == "best"
                    else min(s for s, _, key in own if key == tuple(ph.cells(p.length))),
                    rel=1e-10,
                )
    table = format_table(patterns)
    merged = [(ph, p) for p in patterns for ph in p.top + p.bottom if ph.count > 1]
    assert merged, "six copies of one text must merge somewhere"
    for ph, p in merged:  # "(xN)" ends the phrase's row
        assert re.search(re.escape(ph.cells(p.length)[0]) + r".*\(x" + str(ph.count) + r"\)$", table, re.M)


def test_span_parts_sum_to_the_wfsa_scores_and_match_brute_force(model):
    clf = model["clf64"]
    readout = model["readout"]
    docs = encode_documents(
        clf, ["w5 w2 w3 w7 w8", "w2 w9 w3 w4", "w11 w2 w3"] + [ex.text for ex in model["splits"].dev[:3]]
    )
    explained = explain_documents(clf, docs)
    W = clf.model.classifier.weight.detach().double().numpy()
    for doc, exp in zip(docs, explained):
        assert exp.readout == readout
        L = len(doc)
        scores = model_scores(clf, doc)
        for w in exp.wfsas:
            if readout == "final":
                assert w.spans == []
                continue
            paths, uj, fj = wfsa_paths(clf, doc, w.wfsa)
            n = uj.shape[1]
            c = np.zeros((L, n))  # plus-times: the sum over all paths ending at t in q_i
            for t, i, _, score in paths:
                c[t, i - 1] += score
            total = sum(sp.value for sp in w.spans)
            assert total == pytest.approx(scores[w.wfsa], rel=1e-10, abs=1e-12)
            assert w.score == pytest.approx(scores[w.wfsa], rel=1e-10, abs=1e-12)
            for sp in w.spans:
                np.testing.assert_allclose(sp.shares, W[:, w.wfsa] * sp.value, rtol=1e-12, atol=1e-15)
                t0 = sp.ends[0]
                if readout == "mean":
                    parts = c.sum(1) / L  # token t adds (1/L) sum_i c_i(t)
                    assert sp.value == pytest.approx(sum(parts[t] for t in sp.ends), rel=1e-10, abs=1e-13)
                    candidates = [e for e in paths if e[0] == t0]
                    positive = parts[t0] >= 0
                else:
                    i = sp.state
                    t_star = int(np.argmax(c[:, i - 1]))  # the first maximum, as the model reads it
                    assert sp.ends == [t_star]
                    assert sp.value == pytest.approx(c[t_star, i - 1], rel=1e-10, abs=1e-13)
                    candidates = [e for e in paths if e[0] == t_star and e[1] == i]
                    positive = sp.value >= 0
                target = (max if positive else min)(e[3] for e in candidates)
                assert sp.phrase.path.kind == ("best" if positive else "worst")
                assert sp.phrase.score == pytest.approx(target, rel=1e-10, abs=1e-13)
                assert sp.phrase.path.states in {e[2] for e in candidates}
                assert sp.phrase.path.end == t0 and all(s == NOT_READ for s in sp.phrase.path.states[t0 + 1 :])
            if readout == "mean":  # every token exactly once, grouped by the match its best path makes
                assert sorted(t for sp in w.spans for t in sp.ends) == list(range(L))
                for sp in w.spans:
                    trans = sp.phrase.path.transitions()
                    for t in sp.ends:
                        best = (max if c[t].sum() >= 0 else min)((e for e in paths if e[0] == t), key=lambda e: e[3])
                        assert [s for s in range(L) if best[2][s] > (best[2][s - 1] if s else 0)] == trans
            else:
                assert sorted(sp.state for sp in w.spans) == [i for i in range(1, n + 1) if c[:, i - 1].any()]
        # the shares and the bias make the logits
        for cls in range(len(exp.classes)):
            spans = (
                sum(sp.shares[cls] for w in exp.wfsas for sp in w.spans)
                if readout != "final"
                else sum(w.contributions[cls] for w in exp.wfsas)
            )
            assert exp.bias[cls] + spans == pytest.approx(exp.logits[cls], rel=1e-9, abs=1e-9)


def test_doc_text_and_html_of_a_pooled_model(model, tmp_path):
    clf = model["clf"]
    readout = model["readout"]
    docs = encode_documents(clf, ["w5 w2 w3 w7 w8 w2 w3"])
    exp = explain_documents(clf, docs)[0]
    text = format_explanation(exp, clf.model.config.structure)
    if readout == "final":
        assert "readout" not in text and "spans that" not in text and "best path consumed" in text
    else:
        assert f"{readout} readout" in text and "best span (anywhere)" in text
        pred = exp.classes[exp.predicted]
        assert f"spans that add most to {pred}" in text or f"spans that take most from {pred}" in text
        pos, neg = exp.top_spans()
        assert all(sp.shares[exp.predicted] > 0 for sp in pos) and all(sp.shares[exp.predicted] < 0 for sp in neg)
        shares = [sp.shares[exp.predicted] for sp in pos]
        assert shares == sorted(shares, reverse=True)
    out = io.StringIO()
    html_file = tmp_path / "r.html"
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in model["splits"].train[:60]))
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in model["splits"].dev[:20]))
    import argparse

    parser = argparse.ArgumentParser()
    explain_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "explain",
            "--model",
            str(model["dir"]),
            "--train",
            str(train),
            "--dev",
            str(dev),
            "--top-k",
            "2",
            "--html",
            str(html_file),
            "--examples",
            "2",
            "--doc",
            "w4 w2 w3 w9",
        ]
    )
    assert explain_cli.run(args, out) == 0
    html = html_file.read_text()
    assert "//" not in html and "<script" not in html
    if readout == "final":
        assert "spans that" not in out.getvalue() and "Spans that add most" not in html
        assert "readout" not in out.getvalue().split("\n")[0]
    else:
        assert f"{readout} readout: each document's best and worst span ending at any token" in out.getvalue()
        assert "Spans that" in html and "best span (anywhere)" in html


def test_render_report_counts_and_the_count_column(model):
    clf = model["clf"]
    docs = encode_documents(clf, ["w2 w3"] * 5 + [ex.text for ex in model["splits"].train[:10]])
    patterns = summarize_patterns(clf, docs, k=2)
    html = render_report(clf, patterns, docs[:4], examples=1)
    assert "<th>docs</th>" in html
    counts = [ph.count for p in patterns for ph in p.top + p.bottom if ph.count > 1]
    assert counts and all(f"&times;{c}" in html for c in counts)


def test_count_in_the_text_table_and_unchanged_rows_without_duplicates():
    tokens = ["<s>", "great", "product", "</s>"]
    from sparse_rational.explain.paths import WFSAPath

    one = Phrase(0, WFSAPath(0, "best", 1.5, (0, 1, 2, NOT_READ)), tokens)
    seven = Phrase(1, WFSAPath(0, "best", 1.25, (0, 1, 2, 2)), tokens, count=7)
    low = Phrase(2, WFSAPath(0, "worst", -0.5, (0, 0, 1, 1)), tokens)
    p = PatternSummary(0, 2, ["neg", "pos"], [-1.0, 1.0], 0.0, 1.0, top=[one, seven], bottom=[low])
    assert format_table([p]).splitlines()[1:] == [
        "          score  transition_1  transition_2  after",
        "  top     +1.5   great         product",
        "          +1.25  great         product       </s>_SL  (x7)",
        "  bottom  -0.5   product                     </s>_SL",
    ]
    assert not math.isnan(p.strength)

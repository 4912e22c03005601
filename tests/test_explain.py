"""Reading the model: best/worst paths against brute force, Table 1 on a planted phrase,
the --doc explanation, and the self-contained HTML report."""

import argparse
import io
import itertools
import re

import numpy as np
import pytest
import torch

from sparse_rational.data import Example, Splits
from sparse_rational.errors import UserError
from sparse_rational.explain import cli as explain_cli
from sparse_rational.explain.paths import NOT_READ, WFSAPath, decode_paths, max_min_scores, path_score, wfsa_slices
from sparse_rational.explain.report import render_report
from sparse_rational.explain.table import (
    Phrase,
    decode_documents,
    encode_documents,
    explain_documents,
    format_explanation,
    format_table,
    score_documents,
    summarize_patterns,
)
from sparse_rational.model import state_layout
from sparse_rational.pipeline import train_text_classifier
from sparse_rational.train import TrainConfig

VOCAB = [f"w{i}" for i in range(16)]
PLANTED = ["w2", "w3"]


# -- paths against brute force -----------------------------------------------------------
def all_paths(T: int, n: int):
    """Every state sequence of a chain WFSA with n states over T tokens ending in q_1..q_n."""
    for moves in itertools.product([0, 1], repeat=T):
        states = tuple(itertools.accumulate(moves))
        if 1 <= states[-1] <= n:
            yield states


@pytest.mark.parametrize("structure", [(1,), (2,), (3,), (4, 1, 2), (2, 2)])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
def test_best_and_worst_paths_equal_brute_force(structure, T):
    torch.manual_seed(100 * T + sum(structure))
    B, N = 3, sum(structure)
    u = torch.randn(T, B, N, dtype=torch.float64) * 2  # signed: the min partial product matters
    f = torch.rand(T, B, N, dtype=torch.float64)
    is_first, owner = state_layout(structure)
    paths = decode_paths(u, f, is_first)
    best, worst = max_min_scores(u, f, is_first, owner)
    for b in range(B):
        for j, (start, n) in enumerate(wfsa_slices(is_first)):
            uj, fj = u[:, b, start : start + n], f[:, b, start : start + n]
            scores = {p: path_score(uj, fj, p) for p in all_paths(T, n)}
            hi, lo = max(scores.values()), min(scores.values())
            for kind, target in (("best", hi), ("worst", lo)):
                p = paths[(b, j, kind)]
                assert p.states in scores, p  # a valid path of this WFSA
                assert scores[p.states] == pytest.approx(target, rel=1e-12, abs=1e-12)
                assert p.score == pytest.approx(target, rel=1e-12, abs=1e-12)
            assert float(best[b, j]) == pytest.approx(hi, rel=1e-12, abs=1e-12)
            assert float(worst[b, j]) == pytest.approx(lo, rel=1e-12, abs=1e-12)


def test_paths_of_a_padded_batch_equal_each_document_alone():
    torch.manual_seed(3)
    structure = (3, 1, 2)
    is_first, _ = state_layout(structure)
    lengths = [6, 2, 4]
    T, N = max(lengths), sum(structure)
    u = torch.randn(T, len(lengths), N, dtype=torch.float64) * 2
    f = torch.rand(T, len(lengths), N, dtype=torch.float64)
    mask = torch.zeros(T, len(lengths), dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[:n, b] = True
    together = decode_paths(u, f, is_first, mask)
    for b, n in enumerate(lengths):
        alone = decode_paths(u[:n, b : b + 1], f[:n, b : b + 1], is_first)
        for j in range(len(structure)):
            for kind in ("best", "worst"):
                p, q = together[(b, j, kind)], alone[(0, j, kind)]
                assert p.states[:n] == q.states and all(s == NOT_READ for s in p.states[n:])
                assert p.score == pytest.approx(q.score, rel=1e-12)


def test_phrase_columns_mark_self_loops():
    tokens = ["<s>", "a", "not", "x", "y", "z", "worth", "b", "it", "c", "</s>"]
    # q0 on <s> a; q1 at "not"; 3 self-loops; q2 at "worth"; 1 self-loop; q3 at "it"; then loops to </s>
    states = (0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3)
    ph = Phrase(0, WFSAPath(0, "best", 1.0, states), tokens)
    assert ph.cells(3) == ["not", "..._SL worth", "b_SL it", "c_SL </s>_SL"]
    assert ph.cells(4) == ["not", "..._SL worth", "b_SL it", "", "c_SL </s>_SL"]
    ph2 = Phrase(0, WFSAPath(0, "best", 1.0, (0, 1, 1, 1, 2)), ["<s>", "a", "b", "c", "</s>"])
    assert ph2.cells(2) == ["a", "b_SL c_SL </s>", ""]


# -- a model trained on a planted phrase -------------------------------------------------
def make_task(n: int, seed: int, extra: dict | None = None) -> list[Example]:
    """Every document holds w2 and w3; the label is pos iff they are adjacent ("w2 w3")."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(VOCAB[4:], size=rng.integers(6, 12)))
        if label:
            k = rng.integers(0, len(words) + 1)
            words[k:k] = PLANTED
        else:
            k = rng.integers(0, len(words) - 1)
            words.insert(k, "w2")
            words.insert(rng.integers(k + 2, len(words) + 1), "w3")
        text = " ".join(words)
        if extra and i in extra:
            text += " " + extra[i]
        out.append(Example(text, "pos" if label else "neg"))
    return out


NASTY = {3: "<b>&x see https://example.com/x and a//b", 5: "<i>&amp; http://foo"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    vec = root / "onehot.txt"
    eye = np.eye(len(VOCAB))
    vec.write_text("".join(w + " " + " ".join(f"{x:g}" for x in row) + "\n" for w, row in zip(VOCAB, eye)))
    splits = Splits(make_task(400, 1, NASTY), make_task(100, 2, NASTY), make_task(100, 3))
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=30, patience=10, batch_size=32, lr=0.05, seed=0)
    clf = train_text_classifier(
        splits, str(vec), "1x2", train_config=cfg, dropout=0.0, input_dropout=0.0, readout="final", verbose=False
    )  # the paper's Table 1: read at </s>
    model_dir = clf.save(root / "model")
    train_file = root / "train.tsv"
    train_file.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in splits.train), encoding="utf-8")
    dev_file = root / "dev.tsv"
    dev_file.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in splits.dev), encoding="utf-8")
    return {"clf": clf, "splits": splits, "dir": model_dir, "train": train_file, "dev": dev_file, "root": root}


def test_planted_phrase_is_the_top_phrase_of_the_deciding_wfsa(trained):
    clf, splits = trained["clf"], trained["splits"]
    assert clf.metrics["test_accuracy"] >= 0.95
    docs = encode_documents(clf, splits.train)
    patterns = summarize_patterns(clf, docs, k=3)
    decisive = max(patterns, key=lambda p: p.typical_effect)
    # the phrases that vote for "pos" are the top ones if high scores vote pos, else the bottom ones
    phrases = decisive.top if decisive.votes_for == "pos" else decisive.bottom
    for ph in phrases:
        first = ph.path.transitions()[0]
        consumed = ph.path.consumed()
        assert [ph.tokens[t] for t in consumed[:2]] == PLANTED, ph.cells(decisive.length)
        assert consumed[:2] == [first, first + 1]  # adjacent: the phrase itself
    table = format_table(patterns)
    assert "transition_1" in table and "top" in table and "bottom" in table
    assert f"vote {decisive.votes_for}" in table


def test_final_readout_table_is_todays_ranking_with_duplicates_merged(trained):
    """For the paper's readout Table 1 is today's: documents ranked by the best (worst) path
    score at </s> (no history, no decoding), each shown by that path; the only change is
    that rows reading the same phrase are merged into the first, with their count."""
    clf, splits = trained["clf"], trained["splits"]
    assert clf.model.config.readout == "final"
    docs = encode_documents(clf, splits.train)
    k = 3
    patterns = summarize_patterns(clf, docs, k=k)
    corpus = score_documents(clf.model, docs)  # today's scores
    merged = 0
    for p in patterns:
        j = p.wfsa
        for rows, values, kind in ((p.top, corpus.best[:, j], "best"), (p.bottom, -corpus.worst[:, j], "worst")):
            ranking = torch.topk(values, len(docs)).indices.tolist()  # today's order (top-k of everything)
            old = decode_documents(clf.model, docs, [(i, j, kind) for i in ranking])
            assert all(s != NOT_READ for path in old.values() for s in path.states)  # they read up to </s>
            first, counts = {}, {}
            for i in ranking:
                key = tuple(Phrase(i, old[(i, j, kind)], docs[i].tokens).cells(p.length))
                first.setdefault(key, i)
                counts[key] = counts.get(key, 0) + 1
            expected = list(first)[:k]
            assert [tuple(ph.cells(p.length)) for ph in rows] == expected
            assert [ph.count for ph in rows] == [counts[key] for key in expected]
            assert [ph.score for ph in rows] == [old[(first[key], j, kind)].score for key in expected]
            for ph in rows:
                assert ph.path == old[(ph.doc, j, kind)]
            today = [tuple(Phrase(i, old[(i, j, kind)], docs[i].tokens).cells(p.length)) for i in ranking[:k]]
            if len(set(today)) == k:  # today's top k read differently: the same rows
                assert [ph.doc for ph in rows] == ranking[:k]
            merged += sum(ph.count > 1 for ph in rows)
    assert merged  # the planted phrase's "w2 w3 ..._SL" rows merge


def test_final_readout_doc_explanation_has_no_spans(trained):
    clf = trained["clf"]
    docs = encode_documents(clf, ["w5 w2 w3 w7", "w2 w9 w3 w4"])
    for exp in explain_documents(clf, docs):
        assert exp.readout == "final" and all(w.spans == [] for w in exp.wfsas)
        assert exp.top_spans() == ([], [])
        text = format_explanation(exp, clf.model.config.structure)
        assert "best path consumed" in text and "readout" not in text and "spans that" not in text
        for w in exp.wfsas:  # the best path is the one that ends at </s>
            assert w.best.path.states[-1] != NOT_READ and w.best.path.end == len(exp.document) - 1


def test_doc_contributions_sum_to_the_logits(trained):
    clf = trained["clf"]
    texts = ["w5 w2 w3 w7", "w2 w9 w3 w4 <b>&x", "w8"]
    docs = encode_documents(clf, texts)
    explained = explain_documents(clf, docs)
    with torch.no_grad():
        probs = clf.predict_proba(texts)
    for exp, p in zip(explained, probs):
        for c in range(len(clf.classes)):
            total = exp.bias[c] + sum(w.contributions[c] for w in exp.wfsas)
            assert total == pytest.approx(exp.logits[c], abs=1e-5)
        np.testing.assert_allclose(exp.probabilities, p, atol=1e-5)
        pred = exp.predicted
        contribs = [w.contributions[pred] for w in exp.wfsas]
        assert contribs == sorted(contribs, reverse=True)
    text = format_explanation(explained[0], clf.model.config.structure)
    assert text.startswith(f"prediction: {clf.classes[explained[0].predicted]}")
    # every logit line: logit = bias + contributions, numerically
    for line in re.findall(r"^  \w+: ([-+.\d]+) = bias ([-+.\d]+) \+ contributions ([-+.\d]+)$", text, re.M):
        logit, bias, contrib = map(float, line)
        assert logit == pytest.approx(bias + contrib, abs=2e-4)


def _parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    explain_cli.add_parser(sub)
    return parser.parse_args(argv)


def test_explain_end_to_end_and_the_html_is_self_contained(trained):
    html_file = trained["root"] / "report.html"
    out = io.StringIO()
    args = _parse(
        [
            "explain",
            "--model",
            str(trained["dir"]),
            "--train",
            str(trained["train"]),
            "--dev",
            str(trained["dev"]),
            "--top-k",
            "2",
            "--html",
            str(html_file),
            "--examples",
            "100",
            "--doc",
            "w4 w2 w3 w9 <b>&x",
        ]
    )
    assert explain_cli.run(args, out) == 0
    text = out.getvalue()
    assert "Pattern 1 (2 transitions)" in text and "prediction:" in text and f"wrote {html_file}" in text
    html = html_file.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for bad in ("http://", "https://", "//", "<script", "<link", "@import", "src="):
        assert bad not in html, bad
    # the planted markup is text, escaped: tokens "<" and "&" of "<b>&x" in the documents
    assert "<b>&x" not in html and "<i>" not in html
    assert re.search(r">&lt;</span>", html) and re.search(r">&amp;</span>", html)
    assert "https:/&#47;example.com" in html  # a URL in a review is shown, not referenced
    assert "<svg" in html and "Pattern 1" in html and "Most confident wrong" in html
    # a document from the training data with markup is escaped in the phrase tables too
    assert html.count("<span") > 10


def test_explain_input_errors(trained, tmp_path):
    with pytest.raises(UserError, match="--dataset SPEC or --train FILE"):
        explain_cli.run(_parse(["explain", "--model", str(trained["dir"])]))
    with pytest.raises(UserError, match="--html needs"):
        explain_cli.run(_parse(["explain", "--model", str(trained["dir"]), "--doc", "w2", "--html", "x.html"]))
    with pytest.raises(UserError, match="not a model folder"):
        explain_cli.run(_parse(["explain", "--model", str(tmp_path / "none"), "--train", str(trained["train"])]))
    out = io.StringIO()  # --doc alone needs no training data
    assert explain_cli.run(_parse(["explain", "--model", str(trained["dir"]), "--doc", "w2 w3"]), out) == 0
    assert out.getvalue().startswith("prediction:")


def test_render_report_of_a_model_without_wfsas(trained):
    from sparse_rational.structure import prune

    clf = trained["clf"]
    empty = prune(clf.model, epsilon=1e9).model
    assert empty.config.structure == ()
    small = type(clf)(empty, clf.vocab, clf.classes, clf.embeddings_source, {})
    docs = encode_documents(small, trained["splits"].dev[:6])
    assert summarize_patterns(small, docs) == []
    html = render_report(small, [], docs, examples=2)
    assert "no WFSA left" in html and "//" not in html
    exp = explain_documents(small, docs[:1])[0]
    assert "bias alone" in format_explanation(exp, ())


def test_explain_arguments_through_the_project_parser(trained, tmp_path):
    from sparse_rational.commandline import Parser

    parser = Parser(prog="sparse-rational")
    explain_cli.add_parser(parser.add_subparsers(dest="command", parser_class=Parser))
    args = parser.parse_args(["explain", "--model", "m", "--dataset", "amazon:kitchen", "--top-k", "3"])
    assert (args.model, args.dataset, args.top_k, args.split_seed, args.html, args.doc) == (
        "m",
        "amazon:kitchen",
        3,
        0,
        None,
        None,
    )
    for bad in (
        ["--dataset", "amazon:kitchen", "--train", "t.tsv"],
        ["--train", "t", "--top-k", "0"],
        ["--train", "t", "--split-seed", "-1"],
    ):
        with pytest.raises(UserError):
            parser.parse_args(["explain", "--model", "m", *bad])
    with pytest.raises(UserError, match="does not exist"):
        explain_cli.run(
            parser.parse_args(
                [
                    "explain",
                    "--model",
                    str(trained["dir"]),
                    "--train",
                    str(trained["train"]),
                    "--html",
                    str(tmp_path / "no" / "r.html"),
                ]
            )
        )

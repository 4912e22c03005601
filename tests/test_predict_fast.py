"""The fast prediction path (issue 13): the batch tokenizer keeps today's tokens, the folded
numpy model gives the PyTorch model's probabilities, predict streams without PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_rational import native as compiled
from sparse_rational import validate
from sparse_rational.cli import main
from sparse_rational.data.benchmarks import read_reviews
from sparse_rational.data.tokenize import BatchTokenizer, tokenize, tokenize_batch
from sparse_rational.errors import UserError
from sparse_rational.folded import FORMAT, FoldedClassifier, FoldedModel, load_folded
from sparse_rational.model import READOUTS, ModelConfig, RationalClassifier
from sparse_rational.pipeline import FORMAT as PIPELINE_FORMAT
from sparse_rational.pipeline import TextClassifier
from sparse_rational.train import EncodedData, predict_proba

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# The batch tokenizer: exactly tokenize()'s tokens


def _corpus_lines(data_dir: Path) -> dict[str, list[str]]:
    """Thousands of real texts of the three shared corpora (raw Blitzer XML reviews, HATN
    lines with HTML entities, FDU-MTL's pre-tokenized lines)."""
    acl = data_dir / "amazon-multi-domain" / "sorted_data_acl"
    amazon = [
        r.text
        for domain in ("dvd", "kitchen_&_housewares")
        for part in ("positive", "negative")
        for r in read_reviews(acl / domain / f"{part}.review", part)
    ]
    hatn = [
        line
        for domain in ("books", "dvd", "electronics", "kitchen")
        for part in ("review_positive", "review_negative")
        for line in (data_dir / "amazon-hatn" / domain / part).read_text(encoding="utf-8").splitlines()[::6]
    ]
    fdu = [
        line.partition("\t")[2]
        for path in sorted((data_dir / "fdu-mtl").glob("*.task.*"))
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[::16]
    ]
    return {"amazon": amazon, "hatn": hatn, "fdu": fdu}


@pytest.mark.parametrize("native", [True, False], ids=["C", "python"])
def test_batch_tokenizer_keeps_the_tokens_of_the_shared_corpora(data_dir, native):
    if native and not compiled.available():
        pytest.skip(f"no C compiler here ({compiled.build_error()})")
    for name, texts in _corpus_lines(data_dir).items():
        assert len(texts) > 3500, name
        expected = [tokenize(t) for t in texts]
        tokenizer = BatchTokenizer(max_chunks=20_000, native=native)  # the memo starts again several times
        got = [toks for k in range(0, len(texts), 1000) for toks in tokenize_batch(texts[k : k + 1000], tokenizer)]
        assert got == expected, name
        assert 1 < tokenizer._size() <= 20_000 + 1000 * 200  # bounded: the limit, or one batch's chunks


_PIECES = st.sampled_from(
    list("abnstdmrelx019 '`\".,-/:;!?*&()$%\u2019\u2026\u00e9\u0301\u00a0\x85\u2028\t\n\x00\x01\u03a3")
    + list("\ufffd\u2014\u212a\u2000\u3000\x1c\x7f")  # separators only after the translation; Kelvin sign
    + ["n't", "'s", "mr.", "u.s.", "&amp;", "&#10;", "&amp", "&lt", "http://x.com/a", ".com", "--", "...", "\u0130"]
    + ["&#32;", "&nbsp;", "&#x2019;", "e\u0301"]  # entities that are spaces and quotes; a decomposed letter
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.lists(_PIECES, max_size=12).map("".join), max_size=6))
def test_batch_tokenizer_equals_tokenize_on_any_texts(texts):
    expected = [tokenize(t) for t in texts]
    assert tokenize_batch(texts, BatchTokenizer(native=False)) == expected
    assert tokenize_batch(texts) == expected  # the C splitter and memo, where a compiler is at hand


def test_batch_tokenizer_edge_cases():
    assert tokenize_batch([]) == []
    assert tokenize_batch(["", "  ", "A"]) == [[], [], ["a"]]
    assert tokenize_batch(["x\x00y", "Don't"]) == [["x", "y"], ["do", "n't"]]  # the separator inside a text
    ids, lengths = BatchTokenizer({"do": 7}.get).ids(["Do do", ""])  # type: ignore[arg-type]
    assert ids.tolist() == [7, 7] and lengths.tolist() == [2, 0]


# ------------------------------------------------------------------------------------------
# The folded model: the PyTorch model's probabilities


def _random_model(structure, readout, vocab=60, e=12, seed=0) -> RationalClassifier:
    torch.manual_seed(seed)
    emb = torch.randn(vocab, e)
    emb = emb / emb.norm(dim=1, keepdim=True)
    model = RationalClassifier(ModelConfig(structure, e, 3, vocab, readout=readout), emb, impl="reference")
    with torch.no_grad():
        model.wfsa.w.mul_(3.0)  # larger weights than at initialisation: long memories, big u
        model.wfsa.b.uniform_(-1.0, 3.0)
        model.classifier.weight.normal_()
    return model.eval()


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("structure", [(4, 4, 4, 4, 4, 4), (4, 3, 3, 2, 2, 2, 1, 1, 1, 1), (1,), (2, 5)])
def test_folded_model_equals_the_torch_model(structure, readout):
    model = _random_model(structure, readout)
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 40, size=23)
    lengths[3], lengths[7] = 1, 90  # one token; longer than the others
    docs = [torch.from_numpy(rng.integers(0, 60, size=int(n))) for n in lengths]
    expected = predict_proba(model, EncodedData(docs, torch.zeros(len(docs), dtype=torch.long))).numpy()
    folded = FoldedModel.from_torch(model)
    got = folded.proba(torch.cat(docs).numpy(), lengths)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # the table is the projection: (E w, E v + b)
    table = model.embeddings.weight @ torch.cat([model.wfsa.w, model.wfsa.v], 1) + torch.cat(
        [0 * model.wfsa.b, model.wfsa.b]
    )
    np.testing.assert_allclose(folded.table, table.detach().numpy(), atol=1e-5)


def test_folded_model_reads_empty_documents_as_zero_and_keeps_documents_apart():
    model = _random_model((3, 1), "max")
    folded = FoldedModel.from_torch(model)
    states = folded.states(np.array([5, 6, 7, 8]), np.array([0, 3, 0, 1]))
    assert states.shape == (4, 4)
    assert not states[[0, 2]].any()
    alone = folded.states(np.array([8]), np.array([1]))
    np.testing.assert_allclose(states[3], alone[0], atol=1e-6)  # the batch changes nothing


# ------------------------------------------------------------------------------------------
# Loading, TextClassifier, the command line


def test_formats_and_readouts_agree_with_the_torch_modules():
    assert FORMAT == PIPELINE_FORMAT
    assert validate.READOUTS == READOUTS


def test_load_folded_checks_the_files(baseline, tmp_path):
    assert isinstance(load_folded(baseline), FoldedClassifier)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "vocab.txt", "metrics.json"):
        (bad / name).write_bytes((baseline / name).read_bytes())
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(baseline / "model.safetensors"))
    tensors["wfsa.b"] = tensors["wfsa.b"][:-1]
    save_file(tensors, str(bad / "model.safetensors"))
    with pytest.raises(UserError, match=r"model.safetensors: tensor wfsa.b has shape"):
        load_folded(bad)
    cfg = json.loads((baseline / "config.json").read_text())
    cfg["model"]["vocab_size"] = 0  # a transformer model: the PyTorch loader's business
    (bad / "config.json").write_text(json.dumps(cfg))
    assert load_folded(bad) is None
    cfg["model"]["extra"] = 1
    cfg["model"]["vocab_size"] = 5
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="unexpected field"):
        load_folded(bad)


def test_text_classifier_predicts_through_the_folded_table(baseline, kitchen, one_thread):
    clf = TextClassifier.load(baseline)
    texts = [ex.text for ex in kitchen.test[:60]] + ["", "&amp; \x00 </s>"]
    reference = TextClassifier.load(baseline, impl="reference")  # a kernel asked for: the PyTorch path
    assert clf.folded() is not None and reference.folded() is None
    np.testing.assert_allclose(clf.predict_proba(texts), reference.predict_proba(texts), atol=1e-5, rtol=0)
    # cut like training documents, counted alike
    np.testing.assert_allclose(
        clf.predict_proba(texts, max_tokens=7), reference.predict_proba(texts, max_tokens=7), atol=1e-5, rtol=0
    )
    assert clf.truncated_texts == reference.truncated_texts > 50
    # a changed model is folded again
    first = clf.folded()
    with torch.no_grad():
        clf.model.wfsa.b.add_(1.0)
    assert clf.folded() is not first


def _predict(argv, capsys) -> list[dict]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_predict_equals_the_torch_path_with_and_without_threads(baseline, kitchen, tmp_path, capsys, monkeypatch):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(" ".join(ex.text.split()) + "\n" for ex in kitchen.test[:50]), encoding="utf-8")
    base = ["predict", "--model", str(baseline), str(texts), "--batch-size", "7"]
    fast = _predict(base, capsys)
    threaded = _predict([*base, "--threads", "3"], capsys)
    monkeypatch.setenv("SPARSE_RATIONAL_NATIVE", "0")  # numpy and the Python tokenizer: the same lines
    assert _predict(base, capsys) == fast
    monkeypatch.delenv("SPARSE_RATIONAL_NATIVE")
    monkeypatch.setenv("SPARSE_RATIONAL_IMPL", "reference")
    slow = _predict(base, capsys)
    assert len(fast) == len(slow) == 50 and threaded == fast
    for a, b in zip(fast, slow):
        assert list(a) == ["label", "probabilities", "known_tokens"] and a["label"] == b["label"]
        assert a["known_tokens"] == b["known_tokens"] > 0
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)


def test_cli_predict_streams_without_importing_torch(baseline):
    """The first batch's lines come out before the input ends, and PyTorch is never imported."""
    code = (
        "import sys; from sparse_rational.cli import main; code = main(sys.argv[1:]); "
        "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SPARSE_RATIONAL_IMPL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "predict", "--model", str(baseline), "-", "--batch-size", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("great product\nit broke\n")
    proc.stdin.flush()
    first = [proc.stdout.readline(), proc.stdout.readline()]  # the input is still open
    assert all(json.loads(line)["label"] for line in first)
    rest, err = proc.communicate("third\n", timeout=60)
    assert proc.returncode == 0, err
    assert len(rest.splitlines()) == 1
    assert err.strip().splitlines()[-1] == "False"


def test_threads_option_is_shared(baseline):
    from sparse_rational.cli import build_parser

    parser = build_parser()
    for argv in (
        ["predict", "--model", "m", "--threads", "2"],
        ["evaluate", "--model", "m", "--threads", "2"],
        ["explain", "--model", "m", "--threads", "2"],
    ):
        assert parser.parse_args(argv).threads == 2
    with pytest.raises(UserError, match="--threads"):
        parser.parse_args(["predict", "--model", "m", "--threads", "0"])


# ------------------------------------------------------------------------------------------
# The export


def test_export_has_the_folded_table_and_the_readme_scorer_reads_old_files(baseline, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(baseline), "--out", "mine.json"]) == 0
    exported = json.loads(Path("mine.json").read_text())
    clf = TextClassifier.load(baseline)
    folded = FoldedModel.from_torch(clf.model).table
    assert np.array(exported["folded"]).shape == folded.shape
    np.testing.assert_allclose(exported["folded"], folded, atol=1e-6)
    block = next(b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S) if "folded" in b)
    texts = ["Works great , I love it", "it broke and the company would not refund me"]
    expected = clf.predict_proba(texts)
    del exported["folded"]  # a file of an earlier version
    Path("mine.json").write_text(json.dumps(exported))
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    for text, p in zip(texts, expected):
        got = namespace["probabilities"](tokenize(text))
        np.testing.assert_allclose([got[c] for c in clf.classes], p, atol=1e-5)

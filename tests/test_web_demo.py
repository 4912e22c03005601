"""``sparse-rational demo``: the self-contained page, driven in headless Chromium through its
``#text=`` / ``#texts=`` hooks and compared with ``predict`` and ``explain``."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import balanced
from test_web_helpers import TRICKY_TEXTS, chromium, chromium_path, open_with_text, open_with_texts

from sparse_rational.cli import main
from sparse_rational.pipeline import TextClassifier
from sparse_rational.web.server import Model, ServeOptions

TOL = 1e-5  # probabilities: the page against predict


@pytest.fixture(scope="module")
def demo_page(baseline, tiny_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "page.html"
    assert main(["demo", "--model", str(baseline), "--train", str(tiny_files["train"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def texts(kitchen):
    """50 texts: the tokenizer's corner cases and raw kitchen test reviews (entities and all)."""
    reviews = [ex.text for ex in balanced(kitchen.test, 60) if len(ex.text) < 1500]
    return TRICKY_TEXTS + reviews[: 50 - len(TRICKY_TEXTS)]


def _model_json(html: str) -> dict:
    m = re.search(r'<script id="model-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no embedded model"
    return json.loads(m.group(1))


def test_page_is_self_contained(demo_page, baseline):
    html = demo_page.read_text(encoding="utf-8")
    clf = TextClassifier.load(baseline)
    assert "default-src 'none'" in html  # the browser itself refuses any request
    assert not re.search(r"\b(src|href|action|srcset)\s*=", html, re.I)
    assert "http://" not in html and "https://" not in html
    model = _model_json(html)
    assert model["format"] == "sparse-rational-demo/1"
    assert model["vocab"].split("\n") == list(clf.vocab.tokens)
    assert model["structure"] == list(clf.model.config.structure)
    assert model["readout"] == clf.model.config.readout
    assert '<output id="prediction" data-label="" data-probabilities="{}"' in html
    for j in range(len(clf.model.config.structure)):
        assert f"Pattern {j + 1}:" in html  # Table 1, from --train


def _rescored(clf, tokens, wfsa: int, states) -> float:
    """The product of the weights along a path the page reported, in float64 from the model's numbers."""
    m = clf.model
    ids = clf.vocab.ids(tokens).numpy()
    x = m.embeddings.weight.double().numpy()[ids]
    w, v, b = (t.detach().double().numpy() for t in (m.wfsa.w, m.wfsa.v, m.wfsa.b))
    f = 1 / (1 + np.exp(-(x @ v + b)))
    u = (x @ w) * (1 - f)
    start, end = m.wfsa.layout.slices[wfsa]
    n = end - start
    score, prev = 1.0, 0
    for t, s in enumerate(states):
        if s < 0:
            continue
        assert 0 <= s <= n and s - prev in (0, 1), states
        if s > prev:
            score *= u[t, start + s - 1]
        elif s > 0:
            score *= f[t, start + s - 1]
        prev = s
    return score


def _compare(clf, texts, results, explain=True):
    probs = clf.predict_proba(texts)
    py_model = Model(ServeOptions(model="-"), clf) if explain else None
    same_paths = paths = 0
    for text, got, row in zip(texts, results, probs):
        want = {c: float(p) for c, p in zip(clf.classes, row)}
        assert set(got["probabilities"]) == set(want)
        for c in want:
            assert abs(got["probabilities"][c] - want[c]) <= TOL, (text[:80], got["probabilities"], want)
        if abs(max(want.values()) - sorted(want.values())[-2]) > 2 * TOL:
            assert got["label"] == clf.classes[int(row.argmax())]
        if not explain:
            continue
        assert got["tokens"] == clf.vocab.words(text), text[:200]  # the same tokenizer
        ref = py_model.explain(text)
        assert got["tokens"] == ref["tokens"]
        for gw, rw in zip(got["wfsas"], ref["wfsas"], strict=True):
            assert gw["wfsa"] == rw["wfsa"] and gw["length"] == rw["length"]
            assert abs(gw["score"] - rw["score"]) <= 1e-5 * (1 + abs(rw["score"]))
            assert np.allclose(gw["contributions"], rw["contributions"], rtol=1e-5, atol=1e-6)
            for kind in ("best", "worst"):
                g, r = gw[kind], rw[kind]
                assert abs(g["score"] - r["score"]) <= 1e-4 * (1 + abs(r["score"])), (kind, g, r)
                assert abs(_rescored(clf, got["tokens"], gw["wfsa"], g["states"]) - g["score"]) <= 1e-9 * (
                    1 + abs(g["score"])
                )
                paths += 1
                same_paths += g["states"] == r["states"]
    if explain:  # ties between float32 (Python) and float64 (page) may pick another equally good path
        assert same_paths >= 0.9 * paths, (same_paths, paths)


def test_browser_matches_predict(demo_page, baseline, texts, tmp_path):
    """50 texts: three through the single-text hook ``#text=`` (one page load each), the others
    through ``#texts=``; probabilities within 1e-5 of predict, the same tokens, and the same
    explanation (scores, contributions, best and worst paths) as the library's."""
    assert len(texts) == 50
    clf = TextClassifier.load(baseline)
    url = demo_page.as_uri()
    single = [texts[1], texts[len(TRICKY_TEXTS)], texts[0]]
    shown = [open_with_text(url, t, tmp_path / "profile") for t in single]
    _compare(clf, single, shown, explain=False)
    for page in shown:
        assert page["rows"] == len(clf.model.config.structure)  # one table row per WFSA
        assert page["ms"] > 0
    assert shown[0]["marked"] > 0  # best paths highlighted in the text
    results = open_with_texts(url, [t for t in texts if t not in single], tmp_path / "profile")
    _compare(clf, [t for t in texts if t not in single], results)


@pytest.mark.parametrize("readout", ["final", "mean"])
def test_other_readouts(readout, baseline, texts, tmp_path):
    """The same weights read with another readout (a model the library can load): the page follows."""
    chromium_path()
    folder = tmp_path / f"model-{readout}"
    shutil.copytree(baseline, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["readout"] = readout
    (folder / "config.json").write_text(json.dumps(cfg))
    page = tmp_path / "page.html"
    assert main(["demo", "--model", str(folder), "--no-table", "--out", str(page)]) == 0
    assert "Table 1 was left out" in page.read_text(encoding="utf-8")
    clf = TextClassifier.load(folder)
    some = texts[:4] + texts[-8:]
    _compare(clf, some, open_with_texts(page.as_uri(), some, tmp_path / "profile"))


def _pixels(image: np.ndarray, color: str) -> np.ndarray:
    """Where ``image`` ``[H, W, 3]`` is exactly the CSS colour ``#rrggbb`` or ``#rgb``."""
    hexes = color[1:] if len(color) == 7 else "".join(c + c for c in color[1:])
    return (image == [int(hexes[i : i + 2], 16) for i in (0, 2, 4)]).all(-1)


def _bar_fraction(image: np.ndarray, fill: str, track: str = "#eee") -> float:
    """How much of its track a probability bar of colour ``fill`` covers, on its fullest pixel row."""
    per_row = _pixels(image, fill).sum(1)
    y = int(per_row.argmax())
    assert per_row[y] > 0, f"no bar of colour {fill}"
    filled, empty = int(per_row[y]), int(_pixels(image, track)[y].sum())
    return filled / (filled + empty)


def test_screenshot(demo_page, baseline, texts, tmp_path):
    """A picture of the page with a review typed in, for a person to look at (a test artifact
    under pytest's tmp dir, not in the repository); what it shows is what the page computed: the
    bars at the model's probabilities, each WFSA's colour in the table and best paths marked."""
    import urllib.parse

    from sparse_rational.explain.report import LIGHT, PALETTE

    image_module = pytest.importorskip("PIL.Image")
    shot = tmp_path / "demo.png"
    review = texts[len(TRICKY_TEXTS) + 1]
    chromium(
        [
            "--hide-scrollbars",
            "--window-size=1280,1400",
            "--virtual-time-budget=5000",
            f"--screenshot={shot}",
            demo_page.as_uri() + "#text=" + urllib.parse.quote(review),
        ],
        tmp_path / "profile",
    )
    print(f"screenshot: {shot}")
    with image_module.open(shot) as png:
        assert png.format == "PNG" and png.size == (1280, 1400)
        image = np.asarray(png.convert("RGB")).astype(np.int64)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # text, not a blank or one-colour page
    clf = TextClassifier.load(baseline)
    probs = dict(zip(clf.classes, clf.predict_proba([review])[0].tolist()))
    label = max(probs, key=lambda c: probs[c])
    # the bars (drawn by the page's script): the predicted class in green, the others in grey-green
    assert _bar_fraction(image, "#2a7d2a") == pytest.approx(probs[label], abs=0.02), probs
    if len(probs) == 2:
        assert _bar_fraction(image, "#8aa") == pytest.approx(1 - probs[label], abs=0.02), probs
    # the table of the WFSAs: each one's swatch in its colour; the best paths marked in the text
    wfsas = len(clf.model.config.structure)
    for j in range(wfsas):
        assert _pixels(image, PALETTE[j]).sum() >= 40, f"no swatch of WFSA {j + 1} ({PALETTE[j]})"
    assert sum(int(_pixels(image, LIGHT[j]).sum()) for j in range(wfsas)) >= 100, "no best path marked"


def test_demo_refuses(baseline, tmp_path, capsys):
    folder = tmp_path / "transformer"
    shutil.copytree(baseline, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["vocab_size"] = 0
    cfg["embeddings"] = {"source": "hf:minilm"}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert main(["demo", "--model", str(folder), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transformer" in err and "sparse-rational serve" in err
    assert not (tmp_path / "x.html").exists()
    assert main(["demo", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    assert main(["demo", "--model", str(baseline), "--out", str(tmp_path)]) == 2  # a folder
    both = ["--dataset", "amazon:kitchen", "--train", "x.tsv"]
    assert main(["demo", "--model", str(baseline), *both, "--out", "p"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("sparse-rational: error:") for line in err)

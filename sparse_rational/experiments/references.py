"""Reference rows of a sweep: the two comparisons a reader makes first, on the sweep's own
splits.

* ``tfidf``: TF-IDF of word 1-2-grams (the library's tokenizer, sublinear tf, terms in at
  least two training documents) and a logistic regression whose C is chosen on dev
  (:data:`C_GRID`; ties: the smaller C).
* ``mean vectors``: a logistic regression (standardised features, C chosen on dev) on the
  mean of the word vectors the WFSAs read: the same vectors (``glove-6b-50d`` or the
  vector file), L2-normalised as the model's are, averaged over a document's tokens that
  have one (a document without any gets zeros). For contextual (``hf:``) vectors, the mean
  of the rows the WFSAs read of each document (every piece's vector, the encoder's special
  tokens included), from the sweep's own encoding (the disk cache the trials read).

Both need scikit-learn (``pip install 'sparse-rational[baselines]'``); without it the
summary says so and the sweep is otherwise unchanged. They are computed once per dataset
and kept in ``references.json`` in the sweep folder, each with one flag per test document
(``test_correct``, as trial records hold), so the summary can compare against them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import tokenize
from ..embeddings.static import load_word_vectors
from ..fileio import atomic_write_json
from ..validate import peek_json
from .protocol import DatasetRef, is_contextual
from .trial import _load_splits

REFERENCES = "references.json"
FORMAT = "sparse-rational-references/1"
#: inverse regularisation strengths tried; the best on dev is kept
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
NAMES = {"tfidf": "TF-IDF 1-2-gram + LR", "mean_vectors": "mean word vectors + LR"}
INSTALL = "scikit-learn is not installed: pip install 'sparse-rational[baselines]'"


def _flags(predicted, gold) -> str:
    return "".join("1" if p == g else "0" for p, g in zip(predicted, gold))


def fit_on_dev(x_train, y_train, x_dev, y_dev, x_test, y_test) -> dict:
    """Logistic regressions for every C of :data:`C_GRID`; the best by dev accuracy (ties:
    the smaller C) is evaluated on test."""
    from sklearn.linear_model import LogisticRegression  # lazy: optional (sklearn)

    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)
        dev = float(np.mean(clf.predict(x_dev) == np.asarray(y_dev))) if len(y_dev) else 0.0
        if best is None or dev > best[0]:
            best = (dev, c, clf)
    assert best is not None
    dev, c, clf = best
    predicted = clf.predict(x_test)
    flags = _flags(predicted, y_test)
    return {
        "dev_accuracy": dev,
        "test_accuracy": flags.count("1") / len(flags) if flags else float("nan"),
        "C": c,
        "test_correct": flags,
    }


def tfidf_reference(splits) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer  # lazy: optional (sklearn)

    vec = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), min_df=2, sublinear_tf=True
    )
    x_train = vec.fit_transform([e.text for e in splits.train])
    parts = [(vec.transform([e.text for e in p]), [e.label for e in p]) for p in (splits.dev, splits.test)]
    out = fit_on_dev(x_train, [e.label for e in splits.train], *parts[0], *parts[1])
    out["features"] = len(vec.vocabulary_)
    return out


def mean_vectors(texts, vectors) -> np.ndarray:
    """``[n, e]``: per text, the mean of its tokens' L2-normalised vectors (tokens without
    one are left out; a text with none gets zeros)."""
    out = np.zeros((len(texts), vectors.dim), np.float64)
    for i, text in enumerate(texts):
        rows = [vectors.index[w] for w in tokenize(text) if w in vectors.index]
        if rows:
            m = np.asarray(vectors.vectors[np.asarray(rows)], np.float64)
            norms = np.linalg.norm(m, axis=1, keepdims=True)
            out[i] = (m / np.where(norms > 0, norms, 1.0)).mean(0)
    return out


def mean_vector_reference(splits, embeddings: str) -> dict:
    from sklearn.preprocessing import StandardScaler  # lazy: optional (sklearn)

    words = {w for p in (splits.train, splits.dev, splits.test) for e in p for w in tokenize(e.text)}
    vectors = load_word_vectors(embeddings, restrict_to=words)
    x = [mean_vectors([e.text for e in p], vectors) for p in (splits.train, splits.dev, splits.test)]
    scaler = StandardScaler().fit(x[0])
    y = [[e.label for e in p] for p in (splits.train, splits.dev, splits.test)]
    out = fit_on_dev(scaler.transform(x[0]), y[0], scaler.transform(x[1]), y[1], scaler.transform(x[2]), y[2])
    out["features"] = vectors.dim
    return out


def contextual_mean_reference(splits, embeddings: str) -> dict:
    """``mean vectors`` for ``hf:`` vectors: the featurizer a trial builds (the same
    encoder, options and disk cache), each document the mean of its rows."""
    from sklearn.preprocessing import StandardScaler  # lazy: optional (sklearn)

    from ..embeddings.featurizer import build_featurizer  # lazy: start-up (torch)

    featurizer, _ = build_featurizer(splits, embeddings, 0, verbose=False)
    table = featurizer.rows
    x = [
        np.stack([table[table.ids(e.text)].double().mean(0).numpy() for e in p])
        for p in (splits.train, splits.dev, splits.test)
    ]
    scaler = StandardScaler().fit(x[0])
    y = [[e.label for e in p] for p in (splits.train, splits.dev, splits.test)]
    out = fit_on_dev(scaler.transform(x[0]), y[0], scaler.transform(x[1]), y[1], scaler.transform(x[2]), y[2])
    out["features"] = featurizer.dim
    return out


def compute(dataset: DatasetRef, embeddings: str) -> dict[str, dict]:
    """Both reference rows of one dataset (``status`` ``ok``, ``failed`` or ``unavailable``).
    TF-IDF on 4660 HATN reviews takes about 40 s on one busy core."""
    try:
        import sklearn  # noqa: F401  # lazy: optional (sklearn)
    except ImportError:
        return {k: {"status": "unavailable", "error": INSTALL} for k in NAMES}
    splits = _load_splits(dataset)
    out: dict[str, dict] = {}
    jobs = {"tfidf": lambda: tfidf_reference(splits)}
    if is_contextual(embeddings):
        jobs["mean_vectors"] = lambda: contextual_mean_reference(splits, embeddings)
    else:
        jobs["mean_vectors"] = lambda: mean_vector_reference(splits, embeddings)
    for name, job in jobs.items():
        try:
            out[name] = {"status": "ok", **job()}
        except Exception as exc:  # noqa: BLE001 - a reference row must not lose the sweep's outputs
            out[name] = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    return out


def load(out: Path) -> dict:
    data = peek_json(Path(out) / REFERENCES)  # missing or damaged (digits, nesting): computed again
    return data.get("datasets", {}) if isinstance(data, dict) and data.get("format") == FORMAT else {}


def ensure(out: Path, datasets: list[DatasetRef], embeddings: str) -> dict[str, dict]:
    """The reference rows of every dataset, computed where ``references.json`` lacks them
    (or holds them for other data or vectors); rows that could not be computed now
    (``unavailable``) are not stored, so a later run computes them."""
    stored = load(out)
    result: dict[str, dict] = {}
    changed = False
    for ds in datasets:
        entry = stored.get(ds.name)
        key = {"dataset": ds.identity(), "embeddings": embeddings, "C": list(C_GRID)}
        if not (isinstance(entry, dict) and entry.get("identity") == key):
            entry = {"identity": key, "rows": compute(ds, embeddings)}
            if all(r["status"] != "unavailable" or "contextual" in r["error"] for r in entry["rows"].values()):
                stored[ds.name] = entry
                changed = True
        result[ds.name] = entry["rows"]
    if changed:
        atomic_write_json(Path(out) / REFERENCES, {"format": FORMAT, "datasets": stored})
    return result

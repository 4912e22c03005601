"""The scikit-learn estimator on a small real fixture: fit / predict / predict_proba with any
labels, Pipeline + GridSearchCV, cross_val_score, pickling, saving, and scikit-learn's own
API checks that apply to an estimator of raw texts.

scikit-learn's checks that cannot apply, and why (each assumes numeric 2-d X):
numeric, sparse, complex, object-dtype, NaN/inf, memmap, F-contiguous and 1-sample / 1-feature
arrays; n_features_in_ and feature names (a text has no fixed features; CountVectorizer skips
them too); sample_weight (fit takes none); multioutput, regression targets, outliers,
partial_fit, class_weight; ``_parameter_constraints`` (options are checked at fit with the
library's one-line errors). Their text counterparts are written out below: fit returns self,
parameters are not overwritten, pickling, idempotence, subset and order invariance, empty X.
"""

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from conftest import balanced  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from sparse_rational import SparseRationalClassifier  # noqa: E402
from sparse_rational.errors import ParameterError  # noqa: E402

TINY = {"patterns": "2x2,2x1", "epochs": 10, "patience": 5, "lr": 0.05, "threads": 1}


@pytest.fixture(scope="module")
def texts(kitchen):
    train, test = balanced(kitchen.train, 120), balanced(kitchen.test, 40)
    return (
        [ex.text for ex in train],
        np.array([1 if ex.label == "positive" else -1 for ex in train]),
        [ex.text for ex in test],
        np.array([1 if ex.label == "positive" else -1 for ex in test]),
    )


@pytest.fixture(scope="module")
def fitted(texts):
    X, y, _, _ = texts
    return SparseRationalClassifier(**TINY).fit(X, y)


def test_fit_predict_keeps_the_label_type(fitted, texts):
    _, _, Xt, yt = texts
    assert list(fitted.classes_) == [-1, 1]
    pred = fitted.predict(Xt)
    assert pred.dtype == fitted.classes_.dtype and set(pred) <= {-1, 1}
    proba = fitted.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert (fitted.classes_[proba.argmax(1)] == pred).all()
    assert fitted.score(Xt, yt) == pytest.approx((pred == yt).mean())
    assert fitted.score(Xt, yt) > 0.55  # it learned something from 108 reviews


def test_columns_follow_classes_when_label_strings_sort_differently(texts):
    X, y, Xt, _ = texts
    names = np.where(y == 1, "z-positive", "a-negative")  # the model sorts labels as strings too
    est = SparseRationalClassifier(**TINY).fit(X, names)
    assert list(est.classes_) == ["a-negative", "z-positive"]
    by_int = SparseRationalClassifier(**TINY).fit(X, y)
    # the same data and seed: the same model, whatever the labels are called
    np.testing.assert_allclose(est.predict_proba(Xt), by_int.predict_proba(Xt), atol=1e-6)
    dicts = est.predict_dicts(Xt[:2])
    assert set(dicts[0]["probabilities"]) == {"a-negative", "z-positive"}
    assert dicts[0]["label"] == est.predict(Xt[:1])[0]


def test_pipeline_in_grid_search_and_cross_val_score(texts):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.pipeline import Pipeline

    X, y, Xt, yt = texts
    X, y = X[:80], y[:80]
    pipe = Pipeline([("clf", SparseRationalClassifier(**TINY))])
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    lrs = [0.01, 0.05]
    grid = GridSearchCV(pipe, {"clf__lr": lrs}, cv=cv, error_score="raise").fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.isfinite(scores).all() and (scores >= 0).all()
    # the best lr is the one of the best mean over the folds (the first of ties, as GridSearchCV ranks)
    folds = np.array([grid.cv_results_[f"split{k}_test_score"] for k in range(2)])  # [fold, candidate]
    assert grid.best_params_ == {"clf__lr": lrs[int(np.argmax(folds.mean(0)))]}, grid.cv_results_
    # the refit model is a model of the best lr on all of X: the same numbers as fitting it directly
    best = grid.best_estimator_.named_steps["clf"]
    assert best.lr == grid.best_params_["clf__lr"]
    direct = SparseRationalClassifier(**{**TINY, "lr": best.lr}).fit(X, y)
    np.testing.assert_allclose(grid.predict_proba(Xt), direct.predict_proba(Xt), rtol=0, atol=1e-6)
    assert set(grid.predict(Xt)) <= {-1, 1}
    scores = cross_val_score(SparseRationalClassifier(**TINY), X, y, cv=cv, error_score="raise")
    assert scores.shape == (2,) and ((0 <= scores) & (scores <= 1)).all()


class _NoTorch(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "torch":
            raise pickle.UnpicklingError(f"torch object {module}.{name} in the pickle")
        return super().find_class(module, name)


def test_pickle_is_the_model_folder_not_a_torch_pickle(fitted, texts):
    import io

    _, _, Xt, _ = texts
    data = pickle.dumps(fitted)
    back = _NoTorch(io.BytesIO(data)).load()
    np.testing.assert_array_equal(back.predict_proba(Xt), fitted.predict_proba(Xt))
    assert back.get_params() == fitted.get_params()
    unfitted = clone(fitted)
    assert not hasattr(unfitted, "model_") and unfitted.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        unfitted.predict(Xt)


def test_save_pretrained_is_a_model_folder(fitted, texts, tmp_path):
    from sparse_rational import TextClassifier
    from sparse_rational.pipeline import is_model_folder

    _, _, Xt, _ = texts
    folder = fitted.save_pretrained(tmp_path / "m")
    assert is_model_folder(folder) and (folder / "README.md").is_file()
    loaded = TextClassifier.from_pretrained(folder)
    assert loaded.classes == ["-1", "1"]
    column = {"-1": 0, "1": 1}
    np.testing.assert_allclose(
        loaded.predict_proba(Xt)[:, [column["-1"], column["1"]]], fitted.predict_proba(Xt), atol=1e-6
    )
    again = SparseRationalClassifier.from_pretrained(folder)
    assert list(again.predict(Xt[:5])) == [str(v) for v in fitted.predict(Xt[:5])]


def test_text_versions_of_the_numeric_checks(fitted, texts):
    X, y, Xt, _ = texts
    before = fitted.get_params()
    est = SparseRationalClassifier(**TINY)
    assert est.fit(X, y) is est  # fit returns self
    assert est.get_params() == before  # and leaves its parameters alone
    np.testing.assert_array_equal(est.predict_proba(Xt), fitted.predict_proba(Xt))  # idempotent
    full = fitted.predict_proba(Xt)
    np.testing.assert_allclose(fitted.predict_proba(Xt[5:12]), full[5:12], atol=1e-6)  # subset invariance
    order = np.random.default_rng(0).permutation(len(Xt))
    np.testing.assert_allclose(fitted.predict_proba([Xt[i] for i in order]), full[order], atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        SparseRationalClassifier(**TINY).fit([], [])
    with pytest.raises(ValueError, match="X item 2"):
        fitted.predict(["fine", 3.5])
    with pytest.raises(ValueError, match="one label per text"):
        SparseRationalClassifier(**TINY).fit(X[:4], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="4 texts but y has 3"):
        SparseRationalClassifier(**TINY).fit(X[:4], y[:3])


def test_one_model_per_estimator(texts):
    X, y, _, _ = texts
    with pytest.raises(ParameterError, match="one number"):
        SparseRationalClassifier(**TINY, target_transitions=(4, 2)).fit(X, y)


def test_every_training_option_of_the_cli_is_a_parameter():
    import dataclasses

    from sparse_rational.config import ModelOptions, StructureOptions, TrainConfig, default

    params = SparseRationalClassifier().get_params()
    for cls in (ModelOptions, TrainConfig, StructureOptions):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                assert f.name in params, f.name
                assert params[f.name] == default(cls, f.name), f.name  # the same defaults
    assert params["embeddings"] == "glove-6b-50d"


@pytest.mark.parametrize(
    "check",
    [
        "check_parameters_default_constructible",
        "check_no_attributes_set_in_init",
        "check_get_params_invariance",
        "check_set_params",
        "check_estimator_cloneable",
        "check_estimator_repr",
        "check_estimators_unfitted",
        "check_mixin_order",
        "check_do_not_raise_errors_in_init_or_set_params",
        "check_estimator_tags_renamed",
        "check_valid_tag_types",
    ],
)
def test_scikit_learn_api_checks(check):
    import sklearn.utils.estimator_checks as checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(checks, check)("SparseRationalClassifier", SparseRationalClassifier(**TINY))

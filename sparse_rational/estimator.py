"""A scikit-learn estimator: :class:`SparseRationalClassifier` fits raw texts and any labels.

It drops into a ``Pipeline``, ``GridSearchCV`` or ``cross_val_score`` next to TF-IDF and a
linear model::

    from sparse_rational import SparseRationalClassifier
    clf = SparseRationalClassifier(target_transitions=20).fit(texts, labels)
    clf.predict(["works great"]), clf.predict_proba(["works great"]), clf.score(texts, labels)
    clf.save_pretrained("model/")            # a normal model folder (predict, explain, export)

Every training option of ``sparse-rational train`` is a constructor parameter of the same
name (``--reg-strength`` is ``reg_strength``), with the same default; ``fit`` carves 10 %
of the rows off as the dev set that early stopping and structure learning read
(``dev_fraction=0`` trains on every row, without early stopping). scikit-learn is the
optional extra ``sklearn``; the estimator needs it only to be built.

A fitted estimator pickles as its model folder's files (JSON and safetensors, no torch
pickle), so ``joblib`` and ``copy.deepcopy`` work; ``clone`` gives an unfitted copy.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .argtypes import capped_threads
from .config import ModelOptions, RunOptions, StructureOptions, TeachOptions, TrainConfig, default
from .data import Splits, examples_from, texts_from
from .data.files import _carve_dev
from .data.memory import label_text
from .data.splitting import _carve
from .errors import DataError, ParameterError, UserError
from .log import get_logger

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.multiclass import check_classification_targets
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("SparseRationalClassifier needs scikit-learn: pip install 'sparse-rational[sklearn]'") from exc

__all__ = ["SparseRationalClassifier"]


def class_names(classes: np.ndarray) -> list[str]:
    """The string the model folder keeps for each class: a string or an integer as a
    data file would hold it (:func:`label_text`), any other hashable label (a float, a
    numpy scalar) as ``str`` writes it (``0.0``); ``classes_`` keeps the values and their type."""
    names = []
    for c in classes:
        try:
            names.append(label_text(c, "class"))
        except DataError:
            value = c.item() if hasattr(c, "item") else c
            name = str(value).strip()
            if not name:
                raise ValueError(f"y has the label {value!r}, which prints as nothing") from None
            names.append(name)
    return names


def _texts(X: Any) -> list[str]:
    """The texts of ``X``; anything else is a ValueError (scikit-learn's convention), with
    the library's one-line message naming the item."""
    try:
        return texts_from(X, name="X")
    except DataError as exc:
        raise ValueError(str(exc)) from None


SMALL_DEV = 30  # a dev set smaller than this gets a warning: one text is more than 3 points of accuracy
_M, _T, _S, _D = ModelOptions, TrainConfig, StructureOptions, TeachOptions


class SparseRationalClassifier(ClassifierMixin, BaseEstimator):
    """A rational RNN text classifier (WFSAs over word vectors, structure learned with group
    lasso) with scikit-learn's API. ``X``: texts (a list, an array, a pandas Series); ``y``:
    labels of any hashable type. See ``sparse-rational train --help`` for each parameter."""

    def __init__(
        self,
        embeddings: str = RunOptions.embeddings,
        patterns: str = default(_M, "patterns"),
        layers: int = default(_M, "layers"),
        bidirectional: bool = default(_M, "bidirectional"),
        dropout: float = default(_M, "dropout"),
        input_dropout: float = default(_M, "input_dropout"),
        readout: str = default(_M, "readout"),
        self_loop_bias: float = default(_M, "self_loop_bias"),
        vectors: str = default(_M, "vectors"),
        epochs: int = default(_T, "epochs"),
        patience: int = default(_T, "patience"),
        batch_size: int = default(_T, "batch_size"),
        lr: float = default(_T, "lr"),
        weight_decay: float = default(_T, "weight_decay"),
        clip: float = default(_T, "clip"),
        seed: int = default(_T, "seed"),
        lr_patience: int = default(_T, "lr_patience"),
        select_on: str = default(_T, "select_on"),
        max_tokens: int = default(_T, "max_tokens"),
        vector_lr: float = default(_T, "vector_lr"),
        vector_pull: float = default(_T, "vector_pull"),
        contrast_pairs: float = default(_T, "contrast_pairs"),
        negation_pairs: float = default(_T, "negation_pairs"),
        reg_strength: float = default(_S, "reg_strength"),
        target_transitions: int | None = default(_S, "target_transitions"),
        reg_epochs: int = default(_S, "reg_epochs"),
        epsilon: float = default(_S, "epsilon"),
        penalty_update: str = default(_S, "penalty_update"),
        depth_discount: float = default(_S, "depth_discount"),
        structure_search: str = default(_S, "structure_search"),
        path_start: float = default(_S, "path_start"),
        path_growth: float = default(_S, "path_growth"),
        path_warmup: int = default(_S, "path_warmup"),
        teacher: str | None = default(_D, "teacher"),
        transfer: str | None = default(_D, "transfer"),
        augment: int = default(_D, "augment"),
        teacher_weight: float = default(_D, "teacher_weight"),
        temperature: float = default(_D, "temperature"),
        dev_fraction: float = 0.1,
        device: str = RunOptions.device,
        precision: str = RunOptions.precision,
        threads: int | None = None,
        verbose: bool = False,
        callbacks: tuple = (),
    ):
        self.embeddings = embeddings
        self.patterns = patterns
        self.layers = layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.readout = readout
        self.self_loop_bias = self_loop_bias
        self.vectors = vectors
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip = clip
        self.seed = seed
        self.lr_patience = lr_patience
        self.select_on = select_on
        self.max_tokens = max_tokens
        self.vector_lr = vector_lr
        self.vector_pull = vector_pull
        self.contrast_pairs = contrast_pairs
        self.negation_pairs = negation_pairs
        self.reg_strength = reg_strength
        self.target_transitions = target_transitions
        self.reg_epochs = reg_epochs
        self.epsilon = epsilon
        self.penalty_update = penalty_update
        self.depth_discount = depth_discount
        self.structure_search = structure_search
        self.path_start = path_start
        self.path_growth = path_growth
        self.path_warmup = path_warmup
        self.teacher = teacher
        self.transfer = transfer
        self.augment = augment
        self.teacher_weight = teacher_weight
        self.temperature = temperature
        self.dev_fraction = dev_fraction
        self.device = device
        self.precision = precision
        self.threads = threads
        self.verbose = verbose
        self.callbacks = callbacks

    # -- options -----------------------------------------------------------------------------
    def run_options(self) -> RunOptions:
        """The :class:`~sparse_rational.config.RunOptions` these parameters stand for."""
        params = self.get_params(deep=False)

        def part(cls):
            return cls(**{f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params})

        if not isinstance(self.target_transitions, (int, type(None))) or isinstance(self.target_transitions, bool):
            raise ParameterError(
                "target_transitions", f"an estimator is one model: give one number, got {self.target_transitions!r}"
            )
        return RunOptions(
            self.embeddings,
            part(ModelOptions),
            part(TrainConfig),
            part(StructureOptions),
            part(TeachOptions),
            device=self.device,
            precision=self.precision,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # raw texts, like CountVectorizer
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # -- fitting -----------------------------------------------------------------------------
    def _splits(self, texts: list[str], labels: list[str]) -> Splits:
        examples = examples_from(list(zip(texts, labels)), name="fit data")  # as a TSV file's rows
        if not 0 <= self.dev_fraction < 1:
            raise ParameterError("dev_fraction", f"must be in [0, 1), got {self.dev_fraction}")
        if self.dev_fraction == 0:
            return Splits(examples, [], [])
        if self.dev_fraction == 0.1:  # as the command line and load_files carve it
            train, dev = _carve_dev(examples, "fit data")
        else:
            n_dev = max(1, round(self.dev_fraction * len(examples)))
            train, dev = _carve(examples, [n_dev], seed=0)
        if len(dev) < SMALL_DEV:
            get_logger(__name__).warning(
                f"the dev set is {len(dev)} texts ({self.dev_fraction:g} of {len(examples)}): early stopping and "
                f"the best epoch follow noise; give more data, a larger dev_fraction, or dev_fraction=0"
            )
        return Splits(train, dev, [])

    def fit(self, X: Any, y: Any) -> SparseRationalClassifier:
        """Train on texts ``X`` and labels ``y`` (10 % of the rows, stratified, become the
        dev set unless ``dev_fraction`` says otherwise)."""
        from .pipeline import train_text_classifier  # lazy: start-up (torch)

        texts = _texts(X)
        if not texts:
            raise ValueError("X is empty: fit needs texts")
        y_array = np.asarray(y)
        if y_array.ndim != 1:
            raise ValueError(f"y must be one label per text (a 1-d array), got shape {y_array.shape}")
        if len(texts) != len(y_array):
            raise ValueError(f"X has {len(texts)} texts but y has {len(y_array)} labels")
        check_classification_targets(y_array)
        classes = np.unique(y_array)
        names = class_names(classes)
        if len(set(names)) != len(names):
            raise ValueError(f"y has labels that print the same ({names}); use distinct strings")
        by_value = {c.item() if hasattr(c, "item") else c: n for c, n in zip(classes, names)}
        labels = [by_value[v.item() if hasattr(v, "item") else v] for v in y_array]
        options = self.run_options()
        if self.threads:
            import torch  # lazy: start-up (torch)

            torch.set_num_threads(capped_threads(int(self.threads), "threads"))
        model = train_text_classifier(
            self._splits(texts, labels), options=options, verbose=self.verbose, callbacks=tuple(self.callbacks)
        )
        model.metrics.provenance = {**(model.metrics.provenance or {}), "call": f"{self!r}.fit"}
        self._set_model(model, classes)
        return self

    def _set_model(self, model, classes: np.ndarray) -> None:
        self.model_ = model
        self.classes_ = classes
        names = class_names(classes)
        position = {name: i for i, name in enumerate(model.classes)}
        self._columns_ = np.array([position[n] for n in names])  # model column of classes_[k]
        self.metrics_ = model.metrics

    # -- predicting --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) or from_pretrained(dir) first"
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities ``[n, n_classes]``, columns in the order of ``classes_``."""
        self._check_fitted()
        texts = _texts(X)
        return self.model_.predict_proba(texts, max_tokens=self.max_tokens)[:, self._columns_]

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each text (values of ``classes_``)."""
        best = self.predict_proba(X).argmax(1)
        return self.classes_[best]

    def predict_dicts(self, X: Any) -> list[dict]:
        """One dict per text: ``{"label": ..., "probabilities": {class: p}}``."""
        probs = self.predict_proba(X)
        return [
            {"label": self.classes_[row.argmax()], "probabilities": dict(zip(self.classes_.tolist(), row.tolist()))}
            for row in probs
        ]

    # -- saving ------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the fitted model as a model folder (see :meth:`TextClassifier.save`)."""
        self._check_fitted()
        return self.model_.save(path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **params: Any) -> SparseRationalClassifier:
        """A fitted estimator from a model folder (its classes are the folder's label strings)."""
        from .pipeline import TextClassifier  # lazy: start-up (torch)

        model = TextClassifier.load(path)
        est = cls(**params)
        est._set_model(model, np.array(model.classes, dtype=object))
        return est

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        state.pop("metrics_", None)  # the model's own, restored with it
        if model is not None:  # the model folder's files: JSON and safetensors, no torch pickle
            with tempfile.TemporaryDirectory() as tmp:
                model.save(Path(tmp) / "model")
                state["_model_files_"] = {p.name: p.read_bytes() for p in (Path(tmp) / "model").iterdir()}
        return state

    def __setstate__(self, state: dict) -> None:
        files = state.pop("_model_files_", None)
        self.__dict__.update(state)
        if files is not None:
            from .pipeline import TextClassifier  # lazy: start-up (torch)

            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "model"
                folder.mkdir()
                for name, data in files.items():
                    if "/" in name or name.startswith("."):
                        raise UserError(f"pickled model: bad file name {name!r}")
                    (folder / name).write_bytes(data)
                self.model_ = TextClassifier.load(folder)
                self.metrics_ = self.model_.metrics

"""sparse-rational: small, fast, interpretable text classifiers. Rational RNNs whose hidden
units are weighted finite-state automata, their structure learned with a group-lasso
penalty (Dodge et al., EMNLP 2019), then pruned and finetuned.

    from sparse_rational import train_text_classifier, TextClassifier, SparseRationalClassifier

The names below are imported on first use, so that ``import sparse_rational`` (and the
command line's ``--help``) stays cheap: torch loads with the first model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lazy import lazy_names
from .log import set_verbosity

_LAZY = {
    "TextClassifier": "pipeline",
    "train_text_classifier": "pipeline",
    "train_structure_path": "pipeline",
    "tune_text_classifier": "tuning",
    "SparseRationalClassifier": "estimator",
    "RunOptions": "config",
    "Callback": "callbacks",
    "TensorBoardCallback": "callbacks",
    "Metrics": "metrics",
    "Splits": "data",
    "Example": "data",
    "splits_from": "data",
}

__all__ = [
    "Callback",
    "Example",
    "Metrics",
    "RunOptions",
    "SparseRationalClassifier",
    "Splits",
    "TensorBoardCallback",
    "TextClassifier",
    "__version__",
    "set_verbosity",
    "splits_from",
    "train_structure_path",
    "train_text_classifier",
    "tune_text_classifier",
]

if TYPE_CHECKING:
    __version__: str
    from .callbacks import Callback, TensorBoardCallback
    from .config import RunOptions
    from .data import Example, Splits, splits_from
    from .estimator import SparseRationalClassifier
    from .metrics import Metrics
    from .pipeline import TextClassifier, train_structure_path, train_text_classifier
    from .tuning import tune_text_classifier


_load, __dir__ = lazy_names(__name__, _LAZY, globals(), also=["__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs 30 ms: not for every `predict`
        from .provenance import package_version  # lazy: start-up (importlib.metadata)

        globals()[name] = version = package_version()
        return version
    return _load(name)

"""A small random search over the training recipe (``train --tune N``,
``tune_text_classifier``): assignments of lr, clip, dropouts and weight decay from the
authors' space, each trained by :func:`~.pipeline.train_text_classifier`, the best on dev kept."""

from __future__ import annotations

from dataclasses import replace

from .classifier import TextClassifier
from .config import RunOptions
from .data import Splits, splits_from
from .embeddings.hf_options import TransformerOptions
from .errors import ParameterError, UserError
from .experiments.protocol import sample_assignments
from .log import get_logger
from .pipeline import train_text_classifier

_log = get_logger(__name__)


def tune_text_classifier(
    splits: Splits,
    n: int,
    options: RunOptions | None = None,
    verbose: bool = True,
    hf_options: TransformerOptions | None = None,
    search_seed: int = 0,
) -> TextClassifier:
    """A small random search: ``n`` assignments of lr, clip, dropout, input dropout and
    weight decay from the authors' space (the one ``reproduce`` samples), each trained
    with ``options`` otherwise; the model with the best dev accuracy is returned, with every
    assignment and its dev accuracy in ``metrics["tuning"]`` (the test set is never looked at
    to choose)."""
    options = options or RunOptions()
    if n < 1:
        raise ParameterError("tune", f"expected a number of assignments >= 1, got {n}")
    if not isinstance(splits, Splits):
        splits = splits_from(splits)
    if not splits.dev:
        raise ParameterError("tune", "needs a dev set to choose by")
    seed_text = f"tune:{search_seed}:{options.embeddings}:{options.model.patterns}"
    trials, best = [], None
    for k, hp in enumerate(sample_assignments(n, options.embeddings, seed_text), 1):
        trial = RunOptions(
            options.embeddings,
            replace(options.model, dropout=hp["dropout"], input_dropout=hp["input_dropout"]),
            replace(options.train, lr=hp["lr"], clip=hp["clip"], weight_decay=hp["weight_decay"]),
            options.structure,
        )
        try:
            clf = train_text_classifier(splits, options=trial, verbose=False, hf_options=hf_options)
            dev = clf.metrics["dev_accuracy"]
            trials.append({"assignment": k, **hp, "dev_accuracy": dev, "transitions": clf.metrics["transitions"]})
        except UserError as exc:  # an assignment whose structure learning fails is skipped
            trials.append({"assignment": k, **hp, "dev_accuracy": None, "error": str(exc)})
            clf, dev = None, None
        if verbose:
            got = f"dev accuracy {dev:.4f}" if dev is not None else f"failed ({trials[-1]['error'][:80]})"
            _log.info(
                f"tune {k}/{n}: lr {hp['lr']:.3g} clip {hp['clip']:.3g} dropout {hp['dropout']:.3g} "
                f"input dropout {hp['input_dropout']:.3g} weight decay {hp['weight_decay']:.2g}: {got}",
            )
        if clf is not None and (best is None or dev > best.metrics["dev_accuracy"]):
            best = clf
    if best is None:
        raise ParameterError("tune", f"all {n} assignments failed (first: {trials[0].get('error')})")
    best.metrics["tuning"] = trials
    return best

"""A training run's data as its models read it: the featurizer of the run's embeddings
(a vocabulary and its static word vectors, or a transformer's vectors, encoded once into
the disk cache), the training and dev documents as row ids (with a teacher: the transfer
texts too, and the teacher's probabilities of every text), and a factory of seeded models
built over the featurizer's rows.

The featurizer owns the rows (:mod:`.embeddings.featurizer`); this module, one layer up,
ties it to the model and the classifier, which the embeddings layer does not import."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .classifier import TextClassifier
from .config import RunOptions
from .data import Splits
from .data.augment import contrast_pairs, negation_pairs
from .embeddings.featurizer import build_featurizer
from .embeddings.rows import StaticRows
from .embeddings.transformer import TransformerOptions
from .log import get_logger
from .model import ModelConfig, RationalClassifier
from .structure import check_size, format_structure
from .teach import teach
from .train import EncodedData, soften

_log = get_logger(__name__)


@dataclass
class Prepared:
    """A prepared run: the data as the model reads it and a model factory."""

    clf: TextClassifier  # vocabulary, classes, vectors; its model is replaced by each result
    train: EncodedData
    dev: EncodedData
    make: Callable[[], RationalClassifier]  # a fresh model, seeded: the same on every call
    prep: dict  # how the data was made: "encoding" (transformer cache), "teacher"
    initial: Any  # the structure record of the initial model (stacked models: per layer and direction)

    def classifier(self, model: RationalClassifier) -> TextClassifier:
        """A classifier of ``model`` with this run's featurizer and classes."""
        return TextClassifier(model, self.clf.featurizer, self.clf.classes)


def prepare(
    splits: Splits,
    options: RunOptions,
    stack: tuple[tuple[int, ...], ...],
    classes: list,
    device: torch.device,
    verbose: bool = True,
    hf_options: TransformerOptions | None = None,
) -> Prepared:
    """The featurizer of ``options.embeddings``, the documents as row ids and the model
    factory of a run whose options :func:`~sparse_rational.validate.check_run` accepted."""
    mopts, seed, teach_opts = options.model, options.train.seed, options.teach
    # labelled texts, as the training split's own (a teacher scores them too); none for 0
    but = contrast_pairs(splits.train, options.train.contrast_pairs, seed)
    negated = negation_pairs(splits.train, float(options.train.negation_pairs), seed)  # a number by now (validate)
    if but or negated:
        if verbose:
            _log.info(
                f"pairs: {len(splits.train)} training texts + {len(negated)} of negation pairs"
                f" (--negation-pairs {options.train.negation_pairs:g}) + {len(but)} of contrast pairs"
            )
        splits = dataclasses.replace(splits, train=[*splits.train, *but, *negated])
    taught = None
    if teach_opts.teacher:
        taught = teach(splits, teach_opts, classes, TextClassifier.load, seed, str(device), verbose)
    extra = taught.texts[len(splits.train) :] if taught is not None else []
    featurizer, prep = build_featurizer(
        splits,
        options.embeddings,
        seed,
        verbose=verbose,
        hf_options=hf_options,
        num_classes=len(classes),
        device=str(device),
        extra_texts=extra,
    )
    ndir = 2 if mopts.bidirectional else 1
    check_size(stack, mopts.bidirectional, featurizer.dim, spec=format_structure(stack[0]))  # now with vectors' size
    deep: dict[str, Any] = (
        {"layers": len(stack), "bidirectional": mopts.bidirectional, "stack": tuple((s,) * ndir for s in stack)}
        if len(stack) > 1 or mopts.bidirectional
        else {}
    )
    config = ModelConfig(
        stack[0],
        featurizer.dim,
        len(classes),
        featurizer.vocab_size,
        mopts.dropout,
        mopts.input_dropout,
        mopts.readout,
        **deep,
    )
    clf = TextClassifier(RationalClassifier(config, featurizer.rows), featurizer, classes)
    train = clf.encode(splits.train)
    if taught is not None:  # the transfer texts, unlabelled, and the teacher's probabilities of every text
        more = clf.encode(extra) if extra else None
        train = EncodedData(
            train.docs + (more.docs if more else []),
            torch.cat([train.labels, more.labels]) if more else train.labels,
            soften(torch.from_numpy(taught.probabilities), teach_opts.temperature),
            teach_opts.teacher_weight,
            teach_opts.temperature,
        )
        prep["teacher"] = taught.record
    dev = clf.encode(splits.dev, strict_labels=False)
    make = model_factory(config, featurizer.rows, options, device)
    return Prepared(clf, train, dev, make, prep, config.structure_record())


def model_factory(
    config: ModelConfig, rows: Any, options: RunOptions, device: torch.device
) -> Callable[[], RationalClassifier]:
    """Fresh models of ``config`` over a copy of ``rows`` (the featurizer's static rows; a
    transformer's table is shared, read-only), seeded with ``options.train.seed``: the
    weights are drawn on the CPU, so a model is the same on every device. How the rows
    train follows ``options.model.vectors``: ``tuned`` in every phase; ``finetune`` frozen
    while a structure is learned and tuned from pruning on (all along without a structure
    phase); ``frozen`` never."""
    vectors, structure = options.model.vectors, options.structure

    def make() -> RationalClassifier:
        torch.manual_seed(options.train.seed)
        model = RationalClassifier(
            config, rows.copy() if rows is not None else None, self_loop_bias=options.model.self_loop_bias
        )
        model.depth_discount = structure.depth_discount  # the penalty's weights by depth (penalty_weights)
        if isinstance(model.embeddings, StaticRows):
            if vectors == "tuned" or (vectors == "finetune" and not structure.learns_structure):
                model.embeddings.tune_()
            elif vectors == "finetune":  # frozen while the structure is learned, tuned from pruning on
                model.embeddings.tune_when_copied = True
        model = model.to(device)
        model.precision = options.precision
        return model

    return make


__all__ = ["Prepared", "model_factory", "prepare"]

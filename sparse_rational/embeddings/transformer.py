"""Frozen transformer (BERT-style) vectors for the WFSA layer, encoded once, cached on disk.

By topic: :mod:`.hf_options` (``--embeddings hf:...``: the options of the vectors, where the
encoder's files are, and the trust rules for reading them), :mod:`.encoder` (the encoder:
texts -> word pieces -> segments -> one vector per piece, written to the cache),
:mod:`.segments` (word pieces -> segments), :mod:`.rows` (the vectors of texts and the row
table a model reads) and :mod:`.cache` (the memory-mapped shards on disk). How a model
reads them: :class:`~sparse_rational.embeddings.featurizer.ContextualVectors`. This module
keeps the names it always exported.
"""

from __future__ import annotations

from .encoder import ContextualEncoder
from .featurizer import prepare_contextual
from .hf_options import (
    ENCODER_FILES,
    LAYERS,
    PACKAGED,
    PREFIX,
    SAFE_INDEX,
    SAFE_WEIGHTS,
    TransformerOptions,
    has_safetensors,
    is_contextual,
    resolve_location,
)
from .rows import EncodedTexts, RowTable
from .segments import SENTENCE_END, segment_pieces

__all__ = [
    "ENCODER_FILES",
    "LAYERS",
    "PACKAGED",
    "PREFIX",
    "SAFE_INDEX",
    "SAFE_WEIGHTS",
    "SENTENCE_END",
    "ContextualEncoder",
    "EncodedTexts",
    "RowTable",
    "TransformerOptions",
    "has_safetensors",
    "is_contextual",
    "prepare_contextual",
    "resolve_location",
    "segment_pieces",
]

"""Frozen input vectors for the WFSA layer."""

from .encoder import ContextualEncoder  # transformers imported lazily
from .hf_options import TransformerOptions, is_contextual
from .static import BOS, EOS, SPECIALS, UNK, WordVectors, build_vocabulary, load_word_vectors

__all__ = [
    "BOS",
    "EOS",
    "SPECIALS",
    "UNK",
    "WordVectors",
    "build_vocabulary",
    "load_word_vectors",
    "ContextualEncoder",
    "TransformerOptions",
    "is_contextual",
]

"""Frozen input vectors for the WFSA layer."""
from .static import BOS, EOS, SPECIALS, UNK, WordVectors, build_vocabulary, load_word_vectors
from .transformer import ContextualEncoder, TransformerOptions, is_contextual  # transformers imported lazily

__all__ = ["BOS", "EOS", "SPECIALS", "UNK", "WordVectors", "build_vocabulary", "load_word_vectors",
           "ContextualEncoder", "TransformerOptions", "is_contextual"]

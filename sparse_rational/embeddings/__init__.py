"""Frozen input vectors for the WFSA layer."""
from .static import BOS, EOS, SPECIALS, UNK, WordVectors, build_vocabulary, load_word_vectors

__all__ = ["BOS", "EOS", "SPECIALS", "UNK", "WordVectors", "build_vocabulary", "load_word_vectors"]

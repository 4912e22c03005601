"""Input vectors for the WFSA layer: static word vectors, transformer vectors, and the
featurizer that owns the rows a model reads.

The names below are loaded on first use (PEP 562), so that importing one light submodule
(``hf_options``, which the command line reads for its defaults) does not import PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

if TYPE_CHECKING:  # the same names, for type checkers
    from .encoder import ContextualEncoder
    from .hf_options import TransformerOptions, is_contextual
    from .static import BOS, EOS, SPECIALS, UNK, WordVectors, build_vocabulary, load_word_vectors

_WHERE = {
    "ContextualEncoder": "encoder",  # transformers imported lazily there
    "TransformerOptions": "hf_options",
    "is_contextual": "hf_options",
    "BOS": "static",
    "EOS": "static",
    "SPECIALS": "static",
    "UNK": "static",
    "WordVectors": "static",
    "build_vocabulary": "static",
    "load_word_vectors": "static",
}

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

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())

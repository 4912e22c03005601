"""The vectors of a set of texts (:class:`EncodedTexts`) and a table of them addressed by
global row ids (:class:`RowTable`), which a model indexes like an embedding matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import cache as vcache


@dataclass
class EncodedTexts:
    """Vectors of a set of texts. ``vectors [R, e]`` (maybe memory-mapped), ``offsets [R, 2]``
    (character offsets; special tokens get empty spans at the text's start and end),
    ``docs``: text key -> (first row, number of rows); ``specials``: (leading, trailing)
    special-token rows of every text."""

    vectors: Tensor
    offsets: np.ndarray
    docs: dict[str, tuple[int, int]]
    cache_path: Path | None
    read_seconds: float
    encode_seconds: float
    cache_bytes: int
    from_cache: bool
    specials: tuple[int, int]

    def rows(self, text: str) -> tuple[Tensor, np.ndarray]:
        """``vectors [T, e]`` and ``offsets [T, 2]`` of one text."""
        a, n = self.docs[vcache.text_key(text)]
        return self.vectors[a : a + n], self.offsets[a : a + n]


class RowTable:
    """Rows of one or more :class:`EncodedTexts`, addressed by global row ids.

    A model with ``vocab_size == 0`` indexes it like an embedding matrix:
    ``table[ids [B, T]] -> [B, T, e]`` float32. It is never saved with the model, and
    ``copy.deepcopy`` shares it (the rows are read-only).
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.chunks: list[EncodedTexts] = []
        self.bases: list[int] = []
        self.index: dict[str, int] = {}  # text key -> global first row
        self.lengths: dict[str, int] = {}
        self.rows = 0

    device = torch.device("cpu")

    def __deepcopy__(self, memo) -> RowTable:
        return self

    def __len__(self) -> int:
        return self.rows

    def append(self, enc: EncodedTexts) -> None:
        if enc.vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dimension {enc.vectors.shape[1]}, table of {self.dim}")
        base = self.rows
        for key, (a, n) in enc.docs.items():
            if key not in self.index:
                self.index[key], self.lengths[key] = base + a, n
        self.chunks.append(enc)
        self.bases.append(base)
        self.rows = base + enc.vectors.shape[0]

    def __contains__(self, text: str) -> bool:
        return vcache.text_key(text) in self.index

    def extended(self, enc: EncodedTexts) -> RowTable:
        """A new table with this one's rows (shared, same ids) and then those of ``enc``;
        this table is left as it was."""
        new = RowTable(self.dim)
        new.chunks, new.bases = list(self.chunks), list(self.bases)
        new.index, new.lengths, new.rows = dict(self.index), dict(self.lengths), self.rows
        new.append(enc)
        return new

    def ids(self, text: str) -> Tensor:
        key = vcache.text_key(text)
        a = self.index[key]
        return torch.arange(a, a + self.lengths[key], dtype=torch.long)

    def __getitem__(self, ids: Tensor) -> Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long).cpu()
        if len(self.chunks) == 1:
            return self.chunks[0].vectors[ids].float()
        flat = ids.reshape(-1)
        out = torch.empty(flat.numel(), self.dim)
        which = torch.searchsorted(torch.tensor(self.bases), flat, right=True) - 1
        for c in which.unique().tolist():
            sel = which == c
            out[sel] = self.chunks[c].vectors[flat[sel] - self.bases[c]].float()
        return out.reshape(*ids.shape, self.dim)

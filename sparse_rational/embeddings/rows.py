"""The rows a model reads, owned by its featurizer (:mod:`.featurizer`): the word vectors
of a static vocabulary (:class:`StaticRows`, frozen or tuned), or the transformer vectors of
a set of texts (:class:`EncodedTexts`) in a table addressed by global row ids
(:class:`RowTable`). Both answer ``lookup(ids, mask, dtype) -> [B, T, e]``, the one call a
model makes on its rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

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

    tuned = False  # transformer vectors are read, never trained

    def copy(self) -> RowTable:
        """The table itself: its rows are read-only, so a pruned model shares them."""
        return self

    def lookup(self, ids: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:
        """``self[ids]`` (read on the host, where the table lives) on ``mask``'s device, as ``dtype``."""
        return self[ids].to(device=mask.device, dtype=dtype)

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


class StaticRows(nn.Module):
    """The word vectors of a static vocabulary, ``weight [V, e]`` (row ``i``: token ``i``).

    A :class:`~.featurizer.StaticVectors` featurizer owns them and a model built over it
    reads them (the same object, a submodule of the model, so it follows the model's device
    and is saved with it as ``embeddings``). Frozen (a buffer, the paper's) or tuned
    (:meth:`tune_`: a parameter, with ``start``, the rows they started from, kept unsaved
    for the pull toward them, :meth:`pull_`). The group lasso never acts on them.
    """

    weight: Tensor
    start: Tensor

    def __init__(self, matrix: Tensor, tune_when_copied: bool = False) -> None:
        super().__init__()
        self.register_buffer("weight", matrix.detach().clone().float())
        # --vectors finetune: frozen while the structure is learned, tuned in the pruned model
        self.tune_when_copied = tune_when_copied

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def tuned(self) -> bool:
        """The rows are trained (a parameter), not frozen (a buffer)."""
        return isinstance(self.weight, nn.Parameter)

    def tune_(self, start: Tensor | None = None) -> StaticRows:
        """Make the rows trainable, in place (``start``, default their current values: where
        the pull draws them back to)."""
        rows = self.weight.detach().clone()
        start = rows.clone() if start is None else start.detach().to(rows).clone()
        if start.shape != rows.shape:
            raise ValueError(f"start rows of shape {tuple(start.shape)} for rows of shape {tuple(rows.shape)}")
        del self._buffers["weight"]
        self.weight = nn.Parameter(rows)
        self.register_buffer("start", start, persistent=False)
        return self

    def freeze_(self) -> StaticRows:
        """The rows, tuned or not, as a frozen buffer again (as a loaded model holds them);
        ``start`` goes."""
        if self.tuned:
            rows = self.weight.detach().clone()
            del self._parameters["weight"]
            self.register_buffer("weight", rows)
            del self._buffers["start"]
        return self

    @torch.no_grad()
    def pull_(self, rate: float) -> None:
        """Tuned rows a step back toward their start: ``rows -= rate * (rows - start)``
        (decoupled, like AdamW's decay, but toward the pretrained vectors, not zero)."""
        self.weight.sub_(min(rate, 1.0) * (self.weight - self.start))

    def copy(self) -> StaticRows:
        """Rows of their own for a new (pruned) model: the same values, tuned from the same
        start if these are tuned, or tuned from here on when ``tune_when_copied``."""
        new = StaticRows(self.weight).to(self.weight.device)
        if self.tuned:
            new.tune_(start=self.start)
        elif self.tune_when_copied:
            new.tune_()
        return new

    def forward(self, ids: Tensor) -> Tensor:
        # embedding(), not weight[ids]: its backward (tuned rows) sums in a fixed order
        return nn.functional.embedding(ids, self.weight)

    def __getitem__(self, ids: Tensor) -> Tensor:
        return self(torch.as_tensor(ids, dtype=torch.long, device=self.weight.device))

    def lookup(self, ids: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:
        """The vectors ``[..., e]`` of row ids, on ``mask``'s device, as ``dtype``."""
        return self(ids.to(self.weight.device)).to(device=mask.device, dtype=dtype)

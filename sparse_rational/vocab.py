"""From text to token ids: the tokenizer, the model's vocabulary, ``<s>``/``</s>``/``<unk>``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .data import tokenize
from .embeddings import BOS, EOS, UNK


@dataclass
class Vocabulary:
    """Token list (row i of the embedding matrix is the vector of ``tokens[i]``)."""

    tokens: list[str]
    lowercase: bool = True
    bos: str | None = BOS
    eos: str | None = EOS
    unk: str = UNK
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}
        for name, tok in (("unk", self.unk), ("bos", self.bos), ("eos", self.eos)):
            if tok is not None and tok not in self.index:
                raise ValueError(f"vocabulary has no {name} token {tok!r}")

    def __len__(self) -> int:
        return len(self.tokens)

    def words(self, text: str) -> list[str]:
        """The token sequence the model reads: ``<s> w_1 .. w_n </s>``."""
        toks = tokenize(text)  # lower-cases
        return ([self.bos] if self.bos else []) + toks + ([self.eos] if self.eos else [])

    def ids(self, tokens: list[str]) -> Tensor:
        unk = self.index[self.unk]
        return torch.tensor([self.index.get(t, unk) for t in tokens], dtype=torch.long)

    def encode(self, text: str) -> Tensor:
        return self.ids(self.words(text))

    def token_settings(self) -> dict:
        return {"lowercase": self.lowercase, "bos": self.bos, "eos": self.eos, "unk": self.unk}

"""The flat state layout of a structure, built once per structure and shared.

All WFSAs' states sit in one row, WFSA by WFSA, each WFSA's ``q_1`` first: a structure
``(n_1, ..., n_d)`` has ``N = sum n_j`` states. Everything that needs to know where a WFSA
begins and ends (the kernels' level tables, the model's score sums, pruning, export, the
explanations) reads it from one :class:`StateLayout`, made by :meth:`StateLayout.of` and
cached by structure; device tensors are cached per device, so a forward pass never copies
the layout from the GPU to the host (docs/DESIGN.md, "The model").

The layout itself is pure Python, so that the PyTorch-free predictor (folded.py) and the
explanations read the same one; only its tensor views import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True, eq=False)
class StateLayout:
    structure: tuple[int, ...]
    _tensors: dict = field(default_factory=dict, repr=False)

    @staticmethod
    @lru_cache(maxsize=256)
    def of(structure: tuple[int, ...]) -> StateLayout:
        """The (shared) layout of ``structure``."""
        return StateLayout(tuple(int(n) for n in structure))

    @cached_property
    def num_states(self) -> int:
        return sum(self.structure)

    @cached_property
    def flags(self) -> tuple[bool, ...]:
        """``is_first`` as Python booleans: state ``s`` is the ``q_1`` of its WFSA."""
        return tuple(i == 0 for n in self.structure for i in range(n))

    @cached_property
    def owners(self) -> tuple[int, ...]:
        """The WFSA index of every state."""
        return tuple(j for j, n in enumerate(self.structure) for _ in range(n))

    @cached_property
    def slices(self) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` of every WFSA's states in the flat row."""
        out, start = [], 0
        for n in self.structure:
            out.append((start, start + n))
            start += n
        return tuple(out)

    @cached_property
    def levels(self) -> tuple[list[int], list[int], list[int]]:
        """``(perm, inverse, sizes)``: the states level by level (all ``q_1`` of the WFSAs,
        longest WFSA first, then all ``q_2``, ...), its inverse permutation, and the number of
        states on each level; the parallel kernels run one level after the other."""
        starts = [a for a, _ in self.slices]
        lengths = list(self.structure)
        order = sorted(range(len(starts)), key=lambda j: -lengths[j])  # stable: longest first
        perm: list[int] = []
        sizes: list[int] = []
        for k in range(max(lengths, default=0)):
            level = [starts[j] + k for j in order if lengths[j] > k]
            perm += level
            sizes.append(len(level))
        inverse = [0] * len(perm)
        for pos, s in enumerate(perm):
            inverse[s] = pos
        return perm, inverse, sizes

    @cached_property
    def depths(self) -> tuple[int, ...]:
        """``i`` for the ``q_i`` of its WFSA, every state (the depth discount's weights)."""
        return tuple(i for n in self.structure for i in range(1, n + 1))

    @cached_property
    def starts(self) -> tuple[int, ...]:
        """The flat index of every WFSA's ``q_1``."""
        return tuple(a for a, _ in self.slices)

    def _cached(self, name: str, device: torch.device | str, make: Any) -> Tensor:
        import torch  # lazy: start-up (torch): the tensor views only; folded.py reads the layout without torch

        key = (name, str(torch.device(device)))
        if key not in self._tensors:
            self._tensors[key] = make().to(device)
        return self._tensors[key]

    def _tensor(self, name: str, device: torch.device | str, values: Any, kind: str) -> Tensor:
        import torch  # lazy: start-up (torch): the tensor views only; folded.py reads the layout without torch

        return self._cached(name, device, lambda: torch.tensor(values, dtype=getattr(torch, kind)))

    def is_first(self, device: torch.device | str = "cpu") -> Tensor:
        """``[N]`` bool on ``device`` (cached)."""
        return self._tensor("is_first", device, self.flags, "bool")

    def owner(self, device: torch.device | str = "cpu") -> Tensor:
        """``[N]`` long: the WFSA of every state, on ``device`` (cached)."""
        return self._tensor("owner", device, self.owners, "long")

    def depth(self, device: torch.device | str = "cpu") -> Tensor:
        """:attr:`depths` as a ``[N]`` float32 tensor on ``device`` (cached)."""
        return self._tensor("depth", device, self.depths, "float32")

    def perm(self, device: torch.device | str = "cpu") -> Tensor:
        """The level order of :attr:`levels` as a ``[N]`` long tensor on ``device`` (cached)."""
        return self._tensor("perm", device, self.levels[0], "long")

    def inverse(self, device: torch.device | str = "cpu") -> Tensor:
        """The inverse of :meth:`perm` (level order back to the flat layout), cached per device."""
        return self._tensor("inverse", device, self.levels[1], "long")

    @staticmethod
    def from_is_first(is_first: Any) -> StateLayout:
        """The layout of ``is_first`` flags: a tensor (one host copy; kernels given a layout
        skip it), an array or a sequence of booleans."""
        if isinstance(is_first, StateLayout):
            return is_first
        if hasattr(is_first, "detach"):
            is_first = is_first.detach().cpu()
        flags = [bool(f) for f in is_first.tolist()] if hasattr(is_first, "tolist") else [bool(f) for f in is_first]
        if flags and not flags[0]:
            raise ValueError("is_first[0] must be True: state 0 is the q_1 of the first WFSA")
        starts = [s for s, first in enumerate(flags) if first]
        return StateLayout.of(tuple(b - a for a, b in zip(starts, starts[1:] + [len(flags)])))


def is_first_tensor(is_first: Tensor | StateLayout, device: torch.device | str) -> Tensor:
    """The ``[N]`` bool tensor of a layout or of a tensor, on ``device``."""
    if isinstance(is_first, StateLayout):
        return is_first.is_first(device)
    import torch  # lazy: start-up (torch): a tensor in, a tensor out; folded.py reads the layout without torch

    return is_first.to(device=device, dtype=torch.bool)


__all__ = ["StateLayout", "is_first_tensor"]

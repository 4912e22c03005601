"""Tiny semiring objects that the WFSA dynamic program is written against.

The recurrence of a rational RNN (see docs/DESIGN.md, 'The model') is the Forward algorithm
on a chain automaton; the only operations it needs are "plus" (combine two ways of
reaching a state) and "scale" (extend a path by one transition of weight w). Writing the dynamic program
against these two operations lets the same code compute

* the model's score (plus-times: sum over all paths of the product of their weights), and
* the best / worst single path (max-times / min-times) used to explain a model.

Elements are tuples of tensors of one shape. Plus-times elements are 1-tuples ``(c,)``.
Transition weights of a rational RNN can be negative (``u = (w . x)(1 - f)`` is
unbounded), so the largest product path through a state may extend the *smallest* partial
product of its predecessor. Max-times and min-times therefore carry an interval
``(hi, lo)``: the largest and the smallest product over all paths that reach the state.
``hi < lo`` (``hi = -inf, lo = +inf``) is the empty set of paths (the semiring zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Element = tuple[Tensor, ...]


@dataclass(frozen=True)
class Semiring:
    """Base class: subclasses implement ``zero``, ``one``, ``plus``, ``scale``, ``value``."""

    name: str

    def zero(self, like: Tensor) -> Element:  # pragma: no cover - interface
        raise NotImplementedError

    def one(self, like: Tensor) -> Element:  # pragma: no cover - interface
        raise NotImplementedError

    def plus(self, a: Element, b: Element) -> Element:  # pragma: no cover - interface
        raise NotImplementedError

    def scale(self, w: Tensor, a: Element) -> Element:  # pragma: no cover - interface
        """``w (x) a``: extend every path summarised by ``a`` by a transition of weight ``w``."""
        raise NotImplementedError

    def value(self, a: Element) -> Tensor:  # pragma: no cover - interface
        """The number this semiring reports for an element (sum, max or min of path scores)."""
        raise NotImplementedError

    def where(self, cond: Tensor, a: Element, b: Element) -> Element:
        return tuple(torch.where(cond, x, y) for x, y in zip(a, b))

    def stack(self, elems: list[Element], dim: int = -1) -> Element:
        return tuple(torch.stack(parts, dim) for parts in zip(*elems))


@dataclass(frozen=True)
class PlusTimes(Semiring):
    """The real semiring (+, x): sum over paths of the product of transition weights."""

    name: str = "plus-times"

    def zero(self, like: Tensor) -> Element:
        return (torch.zeros_like(like),)

    def one(self, like: Tensor) -> Element:
        return (torch.ones_like(like),)

    def plus(self, a: Element, b: Element) -> Element:
        return (a[0] + b[0],)

    def scale(self, w: Tensor, a: Element) -> Element:
        return (w * a[0],)

    def value(self, a: Element) -> Tensor:
        return a[0]


@dataclass(frozen=True)
class MaxMinTimes(Semiring):
    """(max, x) and (min, x) over signed weights: elements are intervals ``(hi, lo)``.

    ``value`` reports ``hi`` for max-times and ``lo`` for min-times; the dynamic program
    is the same for both, which is what makes the best and the worst path exact when
    weights are negative.
    """

    name: str = "max-times"
    report: str = "max"  # "max" or "min"

    def zero(self, like: Tensor) -> Element:
        return (torch.full_like(like, -torch.inf), torch.full_like(like, torch.inf))

    def one(self, like: Tensor) -> Element:
        return (torch.ones_like(like), torch.ones_like(like))

    def plus(self, a: Element, b: Element) -> Element:
        return (torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1]))

    def scale(self, w: Tensor, a: Element) -> Element:
        hi, lo = a
        empty = hi < lo
        p, q = w * hi, w * lo
        new_hi = torch.where(empty, hi, torch.maximum(p, q))
        new_lo = torch.where(empty, lo, torch.minimum(p, q))
        return (new_hi, new_lo)

    def value(self, a: Element) -> Tensor:
        return a[0] if self.report == "max" else a[1]


PLUS_TIMES = PlusTimes()
MAX_TIMES = MaxMinTimes(name="max-times", report="max")
MIN_TIMES = MaxMinTimes(name="min-times", report="min")

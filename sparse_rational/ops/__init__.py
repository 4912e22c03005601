"""The recurrence of a rational RNN layer behind one function, :func:`rational_forward`.

Implementations share the signature of :func:`reference.rational_forward_ref`:
``(x [T,B,e], w [e,N], v [e,N], b [N], is_first [N] bool, mask [T,B] bool | None) -> c(T) [B,N]``.
"""
from __future__ import annotations

from torch import Tensor

from .reference import rational_forward_ref, semiring_dp, shift_states, transition_weights

IMPLEMENTATIONS = {"reference": rational_forward_ref}


def rational_forward(
    x: Tensor,
    w: Tensor,
    v: Tensor,
    b: Tensor,
    is_first: Tensor,
    mask: Tensor | None = None,
    impl: str = "auto",
) -> Tensor:
    """Plus-times WFSA states at the end of each document, ``[B, N]`` (see module doc)."""
    fn = IMPLEMENTATIONS["reference"] if impl == "auto" else IMPLEMENTATIONS[impl]
    return fn(x, w, v, b, is_first, mask)


__all__ = [
    "IMPLEMENTATIONS",
    "rational_forward",
    "rational_forward_ref",
    "semiring_dp",
    "shift_states",
    "transition_weights",
]

"""Names a package exports but imports on first use (PEP 562's module ``__getattr__``), so
that importing the package stays cheap: ``sparse_rational`` (torch loads with the first
model) and ``sparse_rational.data`` (``predict`` needs the tokenizer, not the readers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from importlib import import_module
from typing import Any


def loader(package: str, lazy: Mapping[str, str], namespace: MutableMapping[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` of ``lazy`` (name -> submodule) is
    imported from the submodule on first use and kept in ``namespace`` (the package's
    globals), so that it is looked up once."""

    def load(name: str) -> Any:
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{lazy[name]}", package), name)
        namespace[name] = value
        return value

    return load

"""Names a package exports but imports on first use (PEP 562's module ``__getattr__`` and
``__dir__``), so that importing the package stays cheap: ``sparse_rational`` (torch loads
with the first model), ``sparse_rational.data`` (``predict`` needs the tokenizer, not the
readers), ``sparse_rational.embeddings`` and ``sparse_rational.explain`` (the command
line's parsers read them without PyTorch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
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


def lazy_names(
    package: str, lazy: Mapping[str, str], namespace: MutableMapping[str, Any], also: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: :func:`loader`, and the names it has
    (its globals, the lazy ones, and ``also``: names its own ``__getattr__`` adds)."""

    def names() -> list[str]:
        return sorted({*namespace, *lazy, *also})

    return loader(package, lazy, namespace), names

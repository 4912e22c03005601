"""The import graph of sparse_rational (benchmarks/import_cycles.py): no cycles, and every
function-local import says why it is local (``# lazy: optional (...)`` or ``# lazy: start-up (...)``)."""

import importlib.util
import sys

from conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("import_cycles", REPO / "benchmarks" / "import_cycles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _collect():
    script = _script()
    imports, modules = script.collect(REPO / "sparse_rational")
    return script, imports, modules


def _path(module: str) -> str:
    base = REPO / module.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    return str(path.relative_to(REPO))


def test_no_import_cycles():
    script, imports, modules = _collect()
    assert script.find_cycles(script.module_graph(imports, modules)) == []


def test_every_function_local_import_gives_its_reason():
    script, imports, _ = _collect()
    missing = [f"{_path(source)}:{line}" for source, line in script.unexplained(imports)]
    assert missing == [], "function-local imports without '# lazy: optional (...)' or '# lazy: start-up (...)'"


def test_the_reason_comment_is_read(tmp_path):
    """The check itself: a reason on any line of the statement counts, another comment does not."""
    package = tmp_path / "sparse_rational"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "m.py").write_text(
        "def f():\n"
        "    import torch  # lazy: start-up (torch)\n"
        "    from onnx import (  # lazy: optional (onnx)\n"
        "        helper,\n"
        "    )\n"
        "    import json  # a standard-library module\n"
        "    import numpy  # lazy: because\n"
        "    return torch, helper, json, numpy\n"
    )
    script = _script()
    imports, _ = script.collect(package)
    assert {i.target: i.reason for i in imports} == {
        "torch": "start-up",
        "onnx": "optional",
        "json": None,
        "numpy": None,
    }
    assert script.unexplained(imports) == [("sparse_rational.m", 6), ("sparse_rational.m", 7)]


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    package = tmp_path / "sparse_rational"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g  # lazy: start-up (a)\n    return g\n")
    script = _script()
    imports, modules = script.collect(package)
    assert script.find_cycles(script.module_graph(imports, modules)) == [["sparse_rational.a", "sparse_rational.b"]]

"""Import cycles between the modules of sparse_rational (standard library only).

    python benchmarks/import_cycles.py [--root sparse_rational] [--edges] [--unexplained]

Reads every ``sparse_rational/**/*.py`` with :mod:`ast` and collects each ``import`` and
``from ... import`` of a sparse_rational module, at module level and inside functions alike
(a function-local import that closes a cycle is still a cycle: it only moves the failure
from import time to call time). Relative imports are resolved against the importing module
(``from . import x`` inside package ``p`` is an edge to ``p.x``; ``from .m import name`` is an
edge to ``p.m.name`` when that is a module, else to ``p.m``), and a package's ``__init__``
importing its submodules counts as edges too. Not counted: imports under
``if TYPE_CHECKING:`` (never run; counted apart), ``importlib.import_module`` calls (not
statements), and the implicit import of a parent package that every submodule import makes.

The strongly connected components of the module graph (Tarjan's algorithm) with more than
one module are the cycles (a package's ``from . import name`` of one of its own attributes
is no edge): each is printed with one
closed path through it and the file:line of every import on that path. Then the count of
cycles, and of function-local imports of sparse_rational modules and of third-party
modules (neither sparse_rational nor the standard library).

A function-local import says why it is not at module level with a comment on one of its
lines, in one of two forms (:data:`LAZY_REASON`)::

    import onnx  # lazy: optional (onnx)       keeps an optional extra optional
    import torch  # lazy: start-up (torch)     keeps a light module (the CLI's --help) light

The statements without one are counted (``--unexplained`` lists them as file:line); they
should be hoisted to the module's imports, or given their reason. Exits 0 whatever it finds
(tests/test_import_cycles.py is the check that fails).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "sparse_rational"

# the reason comment of a function-local import: "# lazy: optional (onnx)", "# lazy: start-up (torch)"
LAZY_REASON = re.compile(r"#\s*lazy:\s*(optional|start-up)\s*\([^)]+\)")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (sparse_rational.*), or the top-level name of another
    line: int
    local: bool  # inside a function
    type_checking: bool  # under `if TYPE_CHECKING:`
    reason: str | None = None  # "optional" or "start-up": the `# lazy:` comment on the statement's lines


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of the module in ``path``, and whether it is a package's ``__init__``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, local: bool, type_checking: bool):
    """Yield ``(import node, local, type_checking)`` for every import statement under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local, type_checking
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, True, type_checking)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), local, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), local, type_checking)
        else:
            yield from _walk(child, local, type_checking)


def _resolve_target(dotted: str, modules: set[str]) -> str:
    """The longest prefix of ``dotted`` that is a module (``a.b.name`` -> ``a.b``)."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return dotted


def collect(root: Path) -> tuple[list[Import], set[str]]:
    files = sorted(root.rglob("*.py"))
    names = {path: module_name(path, root) for path in files}
    modules = {name for name, _ in names.values()}
    imports: list[Import] = []
    for path in files:
        source, is_package = names[path]
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))
        for node, local, type_checking in _walk(tree, False, False):
            statement = "\n".join(lines[node.lineno - 1 : node.end_lineno or node.lineno])
            found = LAZY_REASON.search(statement)
            reason = found.group(1) if found else None
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    # the package the dots count from: a package's __init__ is itself that package
                    base = source.split(".") if is_package else source.split(".")[:-1]
                    if node.level > 1:
                        base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    targets.append(sub if sub in modules else stem)
            for target in dict.fromkeys(targets):  # `from .m import a, b` is one import of m
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    target = _resolve_target(target, modules)
                else:
                    target = target.split(".")[0]
                imports.append(Import(source, target, node.lineno, local, type_checking, reason))
    imports = list(dict.fromkeys(imports))  # `import a.b, a.c` of one third-party package is one import
    return imports, modules


def runtime_imports(imports: list[Import], modules: set[str]) -> list[Import]:
    """The imports of sparse_rational modules that run (not under TYPE_CHECKING), less a
    package's ``from . import name`` of its own attribute."""
    return [i for i in imports if i.target in modules and not i.type_checking and i.source != i.target]


def module_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """Each module's set of the sparse_rational modules it imports (at module level or in a function)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in runtime_imports(imports, modules):
        graph[imp.source].add(imp.target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module: the import cycles."""
    return [c for c in tarjan(graph) if len(c) > 1]


def unexplained(imports: list[Import]) -> list[tuple[str, int]]:
    """``(module, line)`` of every function-local import statement without a ``# lazy:`` reason."""
    return sorted({(i.source, i.line) for i in imports if i.local and i.reason is None})


def tarjan(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` (iterative Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            if successors:
                nxt = successors.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One closed path inside ``component``, from its first module back to it (BFS)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return [start, start]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / PACKAGE)
    ap.add_argument("--edges", action="store_true", help="also print every edge of the graph")
    ap.add_argument(
        "--unexplained",
        action="store_true",
        help="also list (file:line) the function-local imports without a '# lazy:' reason comment",
    )
    args = ap.parse_args(argv)
    root = args.root.resolve()

    imports, modules = collect(root)
    ours = [i for i in imports if i.target in modules]
    runtime = runtime_imports(imports, modules)
    graph = module_graph(imports, modules)
    where: dict[tuple[str, str], list[Import]] = {}
    for imp in runtime:
        where.setdefault((imp.source, imp.target), []).append(imp)

    def rel(module: str) -> str:
        return module.removeprefix(PACKAGE + ".") if module != PACKAGE else PACKAGE

    def site(imp: Import) -> str:
        kind = "function-local" if imp.local else "module-level"
        path = module_path(imp.source)
        return f"{path}:{imp.line} ({kind})"

    def module_path(module: str) -> str:
        base = root.parent / Path(*module.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        return str(path.relative_to(root.parent))

    if args.edges:
        for (source, target), sites in sorted(where.items()):
            print(f"{rel(source)} -> {rel(target)}: " + ", ".join(site(s) for s in sites))
        print()

    cycles = find_cycles(graph)
    print(f"{len(modules)} modules, {len(where)} edges ({len(runtime)} imports of {PACKAGE} modules)")
    for n, component in enumerate(cycles, 1):
        print(f"\ncycle {n}: {len(component)} modules: {', '.join(rel(m) for m in component)}")
        path = cycle_through(component, graph)
        print("  " + " -> ".join(rel(m) for m in path))
        for source, target in zip(path, path[1:]):
            listed = ", ".join(site(s) for s in where[(source, target)])
            print(f"    {rel(source)} -> {rel(target)}: {listed}")

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    local_ours = [i for i in ours if i.local]
    local_third = [i for i in imports if i.local and i.target not in modules and i.target not in stdlib]
    local_std = [i for i in imports if i.local and i.target not in modules and i.target in stdlib]
    type_checking = [i for i in ours if i.type_checking]
    print(f"\ncycles: {len(cycles)}")
    print(f"function-local imports of {PACKAGE} modules: {len(local_ours)}")
    third = sorted({i.target for i in local_third})
    print(f"function-local imports of third-party modules: {len(local_third)} ({', '.join(third)})")
    print(f"function-local imports of standard-library modules: {len(local_std)}")
    print(f"imports of {PACKAGE} modules under TYPE_CHECKING (not in the graph): {len(type_checking)}")
    statements = {(i.source, i.line): i.reason for i in imports if i.local}
    reasons = {kind: sum(r == kind for r in statements.values()) for kind in ("optional", "start-up")}
    missing = unexplained(imports)
    print(
        f"function-local import statements with a '# lazy:' reason: {sum(reasons.values())} "
        f"(optional {reasons['optional']}, start-up {reasons['start-up']}); without one: {len(missing)}"
    )
    if args.unexplained:
        for source, line in missing:
            print(f"  {module_path(source)}:{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

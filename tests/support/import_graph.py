"""The project's own import graph, read from the source with `ast` (nothing is imported).

Every import counts, wherever it is written: at module level, inside a function (a lazy import
is still a dependency), under `if TYPE_CHECKING:`, and `importlib.import_module("literal")`.
Imports of third-party modules are ignored. A package's `__init__` is a module of its own;
importing `a.b.c` is an edge to `a.b.c` only, not to the packages above it, as in grimp /
import-linter.

The layer rules are data (`Layer`), so the same walk can check an older layout: see
/tmp/restructure/layers_report.py.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One import statement between two of the project's modules."""
    importer: str
    imported: str
    line: int


@dataclass(frozen=True)
class Layer:
    """A named group of modules (by dotted prefix) and the layers it may import besides itself.

    `may_import` lists layers by name and is not transitive: write out every layer allowed.
    """
    name: str
    prefixes: tuple[str, ...]
    may_import: tuple[str, ...] = ()


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file, for every .py file below the given top-level packages."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to: itself or its longest existing prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _base_of_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    package = importer if is_package else importer.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{module}".strip(".") if module else package


def _named_targets(node: ast.AST, importer: str, is_package: bool) -> list[str]:
    """Dotted names one AST node imports (candidates, not yet resolved to project modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = (_base_of_relative(importer, is_package, node.level, node.module)
                if node.level else node.module or "")
        # `from a.b import c` imports the module a.b.c when there is one, else a.b itself:
        # _resolve falls back to the longest existing prefix.
        return [f"{base}.{alias.name}".lstrip(".") for alias in node.names]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                          "__import__")):
        return [node.args[0].value]
    return []


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, Import] = {}
    for node in ast.walk(tree):
        targets = {_resolve(c, modules) for c in _named_targets(node, name, is_package)}
        for target in targets - {None, name}:
            found.setdefault(target, Import(name, target, node.lineno))
    return list(found.values())


def import_graph(root: Path, packages: tuple[str, ...]) -> list[Import]:
    modules = find_modules(root, packages)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def cycles(edges: list[Import]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's SCCs)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str, layers: tuple[Layer, ...]) -> Layer | None:
    """The layer whose longest prefix matches `module` (None: the module is in no layer)."""
    best, best_length = None, -1
    for layer in layers:
        for prefix in layer.prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_length:
                best, best_length = layer, len(prefix)
    return best


def layer_violations(edges: list[Import], layers: tuple[Layer, ...]) -> list[str]:
    """Imports a layer does not allow (upward, or across to a sibling layer), one line each."""
    found = []
    for edge in edges:
        source, target = layer_of(edge.importer, layers), layer_of(edge.imported, layers)
        if source is None or target is None or source is target:
            continue
        if target.name not in source.may_import:
            found.append(f"{edge.importer}:{edge.line} ({source.name}) imports "
                         f"{edge.imported} ({target.name})")
    return sorted(found)


def cycle_edges(edges: list[Import], members: list[str]) -> list[str]:
    """The imports that close one cycle, as `importer:line -> imported`, to say what to cut."""
    inside = set(members)
    return sorted(f"{e.importer}:{e.line} -> {e.imported}" for e in edges
                  if e.importer in inside and e.imported in inside)

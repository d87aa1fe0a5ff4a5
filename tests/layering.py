"""The layering checker: which of our packages may import which, and no import cycles.

In the spirit of Home Assistant's hassfest: every ``.py`` file under ``schemas/``,
``channels/`` and ``services/`` is parsed with :mod:`ast` (never imported), the graph of
imports between our own modules is built, and the rules below are checked on it.

Rules (``a`` may import ``b``):

- ``schemas.*`` imports nothing of ours outside ``schemas``;
- ``channels.base.*`` imports only ``schemas.*`` and ``channels.base.*``;
- ``channels.<name>.*`` (a channel) imports only ``schemas.*``, ``channels.base.*`` and its
  own ``channels.<name>.*``: channels never import each other, nor ``services``;
- the registry, ``channels.registry`` and the ``channels`` package itself, imports only
  ``schemas.*`` and ``channels.base.*`` (and each other): channels are found through entry
  points, never imported by name;
- ``services.*`` may import anything of ours;
- no import cycle between modules, counting only the imports run when a module is imported:
  top-level statements, including the bodies of top-level ``try``/``if``/``with`` blocks and of
  class statements, but not function bodies nor ``if TYPE_CHECKING:`` blocks. The layer rules
  count every import, wherever it is.

What counts as an import of module ``m``:

- ``import a.b.c`` imports ``a.b.c``;
- ``from a.b import c`` imports ``a.b.c`` when ``c`` is a submodule, else ``a.b``;
- relative imports are resolved against the importing module's package;
- ``importlib.import_module("a.b")`` and ``__import__("a.b")`` with a literal name import
  ``a.b`` (for the layer rules; also for cycles when run at top level).

Importing ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__``); those implicit edges
are left out of the cycle check: a submodule that imports a sibling while its package's
``__init__`` is still running is harmless, and an import of a name from the package itself
(``from a import x``) is an explicit edge to ``a`` anyway.

Use :func:`check` for the list of violations, each a readable line
``path:line: importer imports target: why``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

PACKAGES = ("schemas", "channels", "services")
REGISTRY = frozenset({"channels", "channels.registry"})
MAX_CYCLES_PER_GROUP = 50  # enough to read; a tangle bigger than this is reported as such


@dataclass(frozen=True)
class Import:
    """One import of one of our modules by another."""

    importer: str  # dotted module name
    path: str  # the importer's file, relative to the root
    line: int
    target: str  # dotted module name (the deepest of ours it resolves to)
    runtime: bool  # run when the importer is imported (top level, not TYPE_CHECKING)
    type_checking: bool  # inside an ``if TYPE_CHECKING:`` block

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(root: Path, path: Path) -> str:
    """``channels/twilio/adapter.py`` -> ``channels.twilio.adapter``; packages by their dir."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name (sorted)."""
    found: dict[str, Path] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(root).parts
            if any(not part.isidentifier() for part in relative[:-1]):
                continue  # not importable (e.g. a data folder with a dash)
            found[module_name(root, path)] = path
    return dict(sorted(found.items()))


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``<anything>.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


@dataclass(frozen=True)
class _Raw:
    """An import statement (or literal dynamic import) before resolution."""

    line: int
    module: str | None  # ``import x`` / ``from x import``: x; None for ``from . import``
    names: tuple[str, ...]  # names of ``from ... import``; () for ``import x``
    level: int  # dots of a relative import
    runtime: bool
    type_checking: bool


class _Collector(ast.NodeVisitor):
    """Every import of a module, with whether it runs at import time."""

    def __init__(self) -> None:
        self.found: list[_Raw] = []
        self._in_function = 0
        self._type_checking = 0

    @property
    def _runtime(self) -> bool:
        return not self._in_function and not self._type_checking

    def _add(self, node: ast.stmt | ast.expr, module: str | None, names: tuple[str, ...]) -> None:
        level = node.level if isinstance(node, ast.ImportFrom) else 0
        self.found.append(
            _Raw(node.lineno, module, names, level, self._runtime, self._type_checking > 0)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name, ())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._add(node, node.module, tuple(alias.name for alias in node.names))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (
            name in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            self._add(node, node.args[0].value, ())
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # decorators, defaults and annotations run at definition time, the body does not
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            if node.returns:
                self.visit(node.returns)
        self.visit(node.args)
        self._in_function += 1
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self._in_function -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        negated = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
        test = node.test.operand if isinstance(node.test, ast.UnaryOp) and negated else node.test
        if not _is_type_checking(test):
            self.generic_visit(node)
            return
        checked, unchecked = (node.orelse, node.body) if negated else (node.body, node.orelse)
        self._type_checking += 1
        for statement in checked:
            self.visit(statement)
        self._type_checking -= 1
        for statement in unchecked:
            self.visit(statement)


def _resolve(
    raw: _Raw, importer: str, is_package: bool, modules: dict[str, Path], ours: tuple[str, ...]
) -> list[str]:
    """The modules of ours a raw import imports (none for third-party ones)."""
    if raw.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        if raw.level > 1:
            package = package[: len(package) - (raw.level - 1)]
        base = ".".join([*package, *([raw.module] if raw.module else [])])
    else:
        base = raw.module or ""
    if not base or base.split(".")[0] not in ours:
        return []
    targets: list[str] = []
    plain = False
    for name in raw.names:
        if f"{base}.{name}" in modules:
            targets.append(f"{base}.{name}")
        else:
            plain = True  # an attribute of ``base`` (or ``*``)
    if plain or not raw.names:
        targets.append(_deepest(base, modules))
    return list(dict.fromkeys(targets))


def _deepest(name: str, modules: dict[str, Path]) -> str:
    """``name`` if it is a module of ours, else its longest prefix that is (else ``name``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return name


def imports(root: Path, packages: Iterable[str] = PACKAGES) -> list[Import]:
    """Every import of one of our modules by another, in file and line order."""
    ours = tuple(packages)
    modules = discover(root, ours)
    found: list[Import] = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_bytes(), filename=str(path))
        collector = _Collector()
        collector.visit(tree)
        relative = path.relative_to(root).as_posix()
        is_package = path.name == "__init__.py"
        for raw in collector.found:
            for target in _resolve(raw, importer, is_package, modules, ours):
                found.append(
                    Import(importer, relative, raw.line, target, raw.runtime, raw.type_checking)
                )
    return found


# --- the layer rules ----------------------------------------------------------------------


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _channel(name: str) -> str | None:
    """``channels.twilio.send`` -> ``twilio``; None outside a channel's package."""
    parts = name.split(".")
    if parts[0] != "channels" or len(parts) < 2 or name in REGISTRY or parts[1] == "base":
        return None
    return parts[1]


def layer_violation(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target`` (None when it may)."""
    if _within(importer, "schemas"):
        if not _within(target, "schemas"):
            return "schemas import nothing of ours outside schemas"
        return None
    if not _within(importer, "channels"):
        return None  # services (and anything else of ours) may import anything
    shared = _within(target, "schemas") or _within(target, "channels.base")
    if importer in REGISTRY:
        if shared or target in REGISTRY:
            return None
        if _channel(target):
            return (
                "the registry imports only channels.base and schemas: it finds channels "
                "through entry points, never by name"
            )
        return "the registry imports only channels.base and schemas"
    if _within(importer, "channels.base"):
        if shared:
            return None
        return "channels.base imports only schemas and channels.base"
    own = _channel(importer)
    if shared or (own is not None and _within(target, f"channels.{own}")):
        return None
    other = _channel(target)
    if other:
        return f"channels never import each other (channels.{own} imports channels.{other})"
    return f"channels.{own} imports only schemas, channels.base and channels.{own}"


def layer_violations(found: Iterable[Import]) -> list[str]:
    """A line per import that breaks a layer rule."""
    lines = []
    for item in found:
        why = layer_violation(item.importer, item.target)
        if why:
            lines.append(f"{item.where()}: {item.importer} imports {item.target}: {why}")
    return lines


# --- cycles ---------------------------------------------------------------------------------


def _graph(found: Iterable[Import]) -> dict[str, dict[str, Import]]:
    """Module -> module it imports at import time -> the first such import."""
    graph: dict[str, dict[str, Import]] = defaultdict(dict)
    for item in found:
        if item.runtime and item.target != item.importer:
            graph[item.importer].setdefault(item.target, item)
    return graph


def _components(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, {})))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(groups)


def _cycles_of(group: list[str], graph: dict[str, dict[str, Import]]) -> Iterator[list[str]]:
    """Each elementary cycle of a component once, starting at its smallest module."""
    members = set(group)
    for start in group:  # sorted: cycles through ``start`` use only modules after it
        allowed = {m for m in members if m > start}
        path = [start]
        work = [iter(sorted(t for t in graph.get(start, {}) if t in members))]
        while work:
            for succ in work[-1]:
                if succ == start:
                    yield [*path, start]
                elif succ in allowed and succ not in path:
                    path.append(succ)
                    work.append(iter(sorted(t for t in graph.get(succ, {}) if t in members)))
                    break
            else:
                work.pop()
                path.pop()


def cycle_violations(found: Iterable[Import]) -> list[str]:
    """A line per import cycle run at import time, as the path of imports that closes it."""
    graph = _graph(found)
    lines = []
    for group in _components(graph):
        for count, cycle in enumerate(_cycles_of(group, graph)):
            if count == MAX_CYCLES_PER_GROUP:
                lines.append(f"import cycle: more cycles among {', '.join(group)}")
                break
            steps = [f"{graph[a][b].where()} {a} imports {b}" for a, b in pairwise(cycle)]
            lines.append("import cycle: " + " -> ".join(steps))
    return lines


def check(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Every layering violation and import cycle of the tree at ``root``."""
    found = imports(root, packages)
    return layer_violations(found) + cycle_violations(found)


if __name__ == "__main__":  # python -m tests.layering
    problems = check(Path(__file__).resolve().parent.parent)
    print("\n".join(problems) or "no layering violations")
    raise SystemExit(1 if problems else 0)

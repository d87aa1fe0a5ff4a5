"""The workers share ``services.worker`` and nothing of each other: the dispatcher reaches
neither the processors nor the web app, whatever it imports on the way."""

from __future__ import annotations

from pathlib import Path

from tests.layering import imports

ROOT = Path(__file__).resolve().parent.parent


def reached(start: str) -> dict[str, str]:
    """Every module of ours ``start``'s package imports, directly or not (any import,
    wherever it is in the module), with the path of imports that first reached it."""
    edges: dict[str, set[str]] = {}
    for found in imports(ROOT):
        edges.setdefault(found.importer, set()).add(found.target)
    seen = {m: m for m in edges if m == start or m.startswith(start + ".")}
    todo = list(seen)
    while todo:
        module = todo.pop()
        for target in sorted(edges.get(module, ())):
            if target not in seen:
                seen[target] = f"{seen[module]} -> {target}"
                todo.append(target)
    return seen


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_dispatcher_imports_nothing_of_the_processors_nor_the_web_app() -> None:
    found = reached("services.dispatcher")
    wrong = [
        path
        for module, path in found.items()
        if under(module, "services.processors") or under(module, "services.api")
    ]
    assert wrong == []
    assert "services.worker.app" in found and "services.worker.batches" in found


def test_the_worker_runtime_imports_no_worker() -> None:
    found = reached("services.worker")
    wrong = [
        path
        for module, path in found.items()
        if any(under(module, p) for p in ("services.processors", "services.dispatcher"))
        or under(module, "services.api")
    ]
    assert wrong == []

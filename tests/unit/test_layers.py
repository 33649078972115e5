"""The package's floors: every import runs down (or stays on its floor), and no module imports
itself round a circle. Read from the source, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import dragoman

PACKAGE = Path(dragoman.__file__).parent

# Lowest first. A module may import from its own floor and the floors below.
FLOORS: list[list[str]] = [
    ["errors", "config", "logging", "metrics", "languages", "html_text", "client", "redis_clients"],
    ["prompts", "records"],
    ["events", "wire", "keys", "scripts"],
    ["engine"],
    ["providers"],
    ["quotas", "auth"],
    ["registry", "admission", "service"],
    ["subtitles", "resumable", "live"],
    ["runtime"],
    ["api", "app"],
    ["cli", "translate_cli", "subtitles_cli", "live_cli", "__main__"],
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["dragoman", *parts])


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dragoman":  # `from dragoman import metrics`
                found |= {f"dragoman.{alias.name}" for alias in node.names}
            elif node.module.startswith("dragoman."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dragoman.")}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # An import of a package's module names that module; of a name in a module, the module.
        targets = set()
        for target in _imports(path):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(FLOORS):
        if top in names:
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def test_every_module_is_on_a_floor_and_imports_only_downwards() -> None:
    upward = [
        f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
        for module, targets in _graph().items()
        if module != "dragoman"
        for target in targets
        if target != "dragoman" and _floor(target) > _floor(module)
    ]
    assert upward == []


def test_no_import_circles() -> None:
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert circles == []

"""The rooms of docs/architecture.md: imports only go down the floors, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import scale_graph

SRC = Path(scale_graph.__file__).parent

FLOORS: list[list[str]] = [  # top floor first: a module may import only from its own floor or below
    ["cli", "server"],
    ["eval", "threads"],
    ["api", "baselines"],
    ["graph"],
    ["nodes"],
    ["models", "local", "vllm", "testing"],
    ["context"],
    ["settings", "grading", "checkpoint"],
    ["state", "prompts", "problem", "answers", "data"],
]
FLOOR = {room: n for n, rooms in enumerate(FLOORS) for room in rooms}


def room(module: str) -> str:
    """``scale_graph.models.client`` → ``models``."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module → the project modules it imports (top-level and lazy imports alike); ``from package import module``
    counts as importing that module. The package's face (``scale_graph/__init__.py``) is left out: it only
    re-exports the public API from below."""
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in paths.items():
        if name == "scale_graph":
            continue
        targets = found.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scale_graph."):
                subs = {f"{node.module}.{a.name}" for a in node.names} & paths.keys()
                targets.update(subs or {node.module})
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("scale_graph."))
    return found


def test_every_room_has_a_floor() -> None:
    assert {room(m) for m in imports() if "." in m} <= set(FLOOR)


def test_imports_only_go_down() -> None:
    upward = [(m, t) for m, targets in imports().items() if "." in m for t in targets
              if FLOOR[room(t)] < FLOOR[room(m)]]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = 2
        return None

    cycles = [c for m in sorted(graph) if m not in state and (c := visit(m, []))]
    assert cycles == []

"""The house's arrows point one way: each top-level package imports only the packages below
it (docs/ARCHITECTURE.md). Read from the source, so a new import that climbs fails here."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BELOW: dict[str, set[str]] = {
    "pipeline": set(),
    "orchestrator": {"pipeline"},
    "db": {"pipeline", "orchestrator"},
    "agent_sdk": {"pipeline", "db"},
    "activities": {"pipeline", "orchestrator", "db"},
    "workflows": {"pipeline", "orchestrator", "db", "activities"},
    "simulation": {"pipeline", "orchestrator", "db", "agent_sdk"},
    "api": {"pipeline", "orchestrator", "db", "workflows"},
    "worker": {"pipeline", "orchestrator", "db", "activities", "workflows"},
    "cli": {
        "pipeline",
        "orchestrator",
        "db",
        "activities",
        "workflows",
        "api",
        "worker",
        "simulation",
        "agent_sdk",
    },
}
"""What each package may import, besides itself (the standard library and third parties
are not ours to order)."""


def our_imports() -> dict[str, dict[str, set[str]]]:
    """package -> package it imports -> the files that do."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or parts[0] in ("tests", "bench"):
            continue
        package = parts[0] if len(parts) > 1 else path.stem
        if package not in BELOW:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in BELOW and top != package:
                    found[package][top].add(str(path.relative_to(ROOT)))
    return found


def test_every_package_is_placed_in_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"tests", "bench"} <= set(BELOW), sorted(packages - set(BELOW))


def test_packages_import_only_what_lies_below_them() -> None:
    climbing = {
        f"{package} -> {target}": sorted(files)
        for package, targets in our_imports().items()
        for target, files in targets.items()
        if target not in BELOW[package]
    }
    assert climbing == {}


def test_no_two_packages_import_each_other_in_a_circle() -> None:
    edges = {package: set(targets) for package, targets in our_imports().items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert sorted(p for p in edges if p in reach(p)) == []

"""The sources modules import each other without cycles (function-level and TYPE_CHECKING
imports included): a cycle makes the order of first use decide whether a name exists yet."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_backup.sources

PACKAGE = "airflow_backup.sources"
ROOT = Path(airflow_backup.sources.__file__).parent


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            deps.update(t.removeprefix(PACKAGE + ".") for t in targets
                        if t.startswith(PACKAGE + ".") and t.removeprefix(PACKAGE + ".")
                        in modules)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """Return one import cycle as a path of module names, or [] if there is none."""
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return []
        for dep in sorted(graph[name]):
            found = walk(dep, [*path, name])
            if found:
                return found
        done.add(name)
        return []

    for name in sorted(graph):
        found = walk(name, [])
        if found:
            return found
    return []


def test_the_sources_modules_import_each_other_without_cycles() -> None:
    graph = _graph()
    assert graph["table_export"] >= {"sql", "checksum"}  # the scan sees imports at all
    assert _cycle(graph) == []


def test_the_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]

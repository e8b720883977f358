"""The modules of airflow_backup import each other without cycles (function-level and
TYPE_CHECKING imports included): a cycle makes the order of first use decide whether a name
exists yet, and it is how layers start leaning on each other (cli ↔ commands, sources.sql ↔
table_export, jobs.runner ↔ notify were such cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_backup

PACKAGE = "airflow_backup"
ROOT = Path(airflow_backup.__file__).parent


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            deps.update(t for t in targets if t in modules and t != name)
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


def test_the_package_has_no_import_cycles() -> None:
    graph = _graph()
    # The scan sees imports at all, module-level and function-level.
    assert "airflow_backup.operations.spec" in graph["airflow_backup.jobs.repos"]
    assert "airflow_backup.sources.actions" in graph["airflow_backup.operations.backup"]
    assert _cycle(graph) == []


def test_the_engine_never_imports_the_front_ends_or_airflow() -> None:
    front = ("airflow_backup.cli", "airflow_backup.jobs", "airflow_backup.provider",
             "airflow_backup.__main__")  # python -m airflow_backup: the CLI
    graph, modules = _graph(), _modules()
    for name in [m for m in graph if not m.startswith(front)]:
        assert not [d for d in graph[name] if d.startswith(front)], name
        text = modules[name].read_text(encoding="utf-8")
        assert "import airflow\n" not in text and "from airflow." not in text \
            and "from airflow import" not in text, name

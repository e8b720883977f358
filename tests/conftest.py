"""Suite-wide fixtures.  Engine-agnostic: nothing here imports ``airflow_backup``.

Helpers live in ``tests/support`` and are imported as ``support.trees`` /
``support.tools`` (pytest puts ``tests/`` on sys.path for this conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.tools import require_tool
from support.trees import TreeSpec, make_tricky_tree

#: Sizes of the small variant: the same edge cases, much less data.
SMALL_BIG_FILE_SIZE = 3 * 1024 * 1024
SMALL_FILES = 100


@pytest.fixture(scope="session")
def restic_bin() -> str:
    """Path of the real restic binary (skip locally / fail on CI when missing)."""
    return require_tool("restic")


@pytest.fixture
def tricky_tree_factory(tmp_path: Path) -> Callable[..., TreeSpec]:
    """``factory(name="tree", **make_tricky_tree_kwargs)`` builds a tree at tmp_path/name.

    Two calls with the same keyword arguments build identical trees (under different
    roots), which ``compare_trees`` reports as equal.
    """

    def factory(name: str = "tree", **kwargs: Any) -> TreeSpec:
        return make_tricky_tree(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def tricky_tree(tmp_path: Path) -> TreeSpec:
    """The full tree: 30 MB random file, 1,000 small files, 30 nested levels."""
    return make_tricky_tree(tmp_path / "tricky")


@pytest.fixture
def small_tricky_tree(tmp_path: Path) -> TreeSpec:
    """Every edge case of ``tricky_tree``, with a 3 MB big file and 100 small files."""
    return make_tricky_tree(
        tmp_path / "small-tricky",
        big_file_size=SMALL_BIG_FILE_SIZE,
        small_files=SMALL_FILES,
        depth=30,
    )

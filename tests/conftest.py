"""Suite-wide fixtures.  Engine-agnostic: nothing here imports ``airflow_backup``.

Helpers live in ``tests/support`` and are imported as ``support.trees`` /
``support.tools`` (pytest puts ``tests/`` on sys.path for this conftest).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from support.moto import MotoServer
from support.tools import require_tool
from support.trees import TreeSpec, make_tricky_tree

# CI replays the same examples every run (no surprise counterexamples in a landing run);
# developers get fresh random examples locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# Backups remember their directories in the cache directory (archiver.known), and restic
# keeps its cache there too: keep the suite's out of the developer's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="airflow-backup-tests-cache-")

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


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto S3 server on 127.0.0.1 (random free port) for the whole session.

    Its credentials and endpoint are put into this process's environment for the session
    (AWS_* variables only), so that code under test and subprocesses (the CLI, restic) find
    it; they are dummies and point only at the loopback server. Tests make their own bucket.
    """
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=log) as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh, empty bucket on the session's moto server."""
    return moto_server.create_bucket()

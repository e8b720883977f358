"""Deterministic versions of a small source tree, for lifecycle tests (forget, prune).

``build_version(root, v)`` makes ``root`` hold version ``v`` exactly: the same call under
another root builds an identical tree (contents, modes, nanosecond mtimes), so a test can
rebuild "what version v looked like" and compare a restore against it with
``support.trees.compare_trees``. Each version adds a random 150 kB file, keeps the two
before it, drops older ones, and rewrites a small log: consecutive versions share data,
so forgetting old snapshots leaves packs that are partly used.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from support.trees import iter_tree, set_mtime_ns

__all__ = ["build_version"]

_BASE_NS = 1_650_000_000_000_000_000


def build_version(root: Path, v: int, *, big: int = 150_000) -> Path:
    """Replace ``root`` with version ``v`` of the tree and return ``root``."""
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "same.txt").write_bytes(b"never changes\n" * 20)
    (root / "log.txt").write_bytes(f"version {v}\n".encode() * 200)
    for j in range(max(0, v - 2), v + 1):
        (root / "data" / f"v{j}.bin").write_bytes(random.Random(j).randbytes(big))
    (root / "docs" / f"note-{v % 2}.md").write_bytes(f"# note {v}\n".encode())
    entries = sorted(iter_tree(root), key=lambda e: (-e[0].count(b"/") - bool(e[0]), e[0]))
    for i, (rel, _) in enumerate(entries):
        path = root / rel.decode() if rel else root
        path.chmod(0o755 if path.is_dir() else 0o644)
        set_mtime_ns(path, _BASE_NS + v * 1_000_000_007 + i * 13, _BASE_NS)
    return root

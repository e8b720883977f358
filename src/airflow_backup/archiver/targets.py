"""Where each backup target goes in the snapshot tree, restic's rules (``archiver/tree.go``).

An absolute target keeps its full path: ``/srv/data`` is ``/srv/data`` in the snapshot. A
relative target keeps the path as given, cleaned, below the snapshot's root, without the
``..`` that lead out of the working directory: ``data`` is ``/data``, ``../x`` is ``/x``,
``a/../b`` is ``/b``. A target with no name left (``.``, ``..``, ``../..``) stands for the
entries of its directory, each a target of its own. Two top-level names from different
directories (``data`` and ``../data``) are told apart as restic does: ``data``, ``data-1``.
The snapshot's ``paths`` are always the absolute paths (see :func:`snapshot_paths`).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

__all__ = ["Target", "resolve_targets", "snapshot_paths"]


@dataclass(frozen=True, slots=True)
class Target:
    """A backup target: ``real`` its absolute path, ``parts`` the names leading to it in the
    snapshot (from the root), ``base`` the real directory holding ``parts[0]``."""

    real: bytes
    parts: tuple[bytes, ...]
    base: bytes


def snapshot_paths(paths: list[str]) -> list[str]:
    """Return the snapshot's ``paths``: every target made absolute, sorted, once."""
    return sorted({os.path.abspath(p) for p in paths})


def _components(path: bytes) -> tuple[bytes, ...]:
    return tuple(p for p in path.split(b"/") if p)


def resolve_targets(paths: list[str]) -> list[Target]:
    """Return the targets for ``paths`` in the order they are placed (each once). A relative
    path with no name left is replaced by its directory's entries, in name order; raise
    OSError if that directory cannot be listed."""
    out: list[Target] = []
    seen: set[bytes] = set()
    for raw in paths:
        p = os.fsencode(raw)
        if p.startswith(b"/"):
            clean = posixpath.normpath(p)
            if clean.startswith(b"//"):
                clean = b"/" + clean.lstrip(b"/")
            expanded = [clean]
        else:
            clean = posixpath.normpath(p)
            if _components(posixpath.normpath(b"/" + clean)):
                expanded = [clean]
            else:  # ".", "..", "../..": the entries of that directory
                expanded = [posixpath.join(clean, n) for n in sorted(os.listdir(clean))]
        for t in expanded:
            if t in seen:
                continue
            seen.add(t)
            real = os.fsencode(os.path.abspath(t))
            if t.startswith(b"/"):
                out.append(Target(real, _components(t), b"/"))
                continue
            ups = 0
            for part in t.split(b"/"):
                if part != b"..":
                    break
                ups += 1
            base = os.fsencode(os.path.abspath(b"/".join([b"."] + [b".."] * ups)))
            out.append(Target(real, _components(posixpath.normpath(b"/" + t)), base))
    return out

"""Path patterns for ``--exclude`` and ``--include``, with restic's semantics.

A pattern is split on ``/`` and each part is an ``fnmatch`` glob; ``**`` matches any number of
path components. A pattern that does not start with ``/`` may match anywhere (it is implicitly
prefixed with ``**/``). A pattern matches a path when it matches the path or one of its
parents, so excluding a directory excludes everything below it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from functools import lru_cache

__all__ = ["PatternSet"]


@lru_cache(maxsize=4096)
def _part_regex(part: bytes) -> re.Pattern[bytes]:
    return re.compile(fnmatch.translate(os.fsdecode(part)).encode("utf-8", "surrogateescape"))


def _split(pattern: str) -> list[bytes]:
    raw = os.fsencode(pattern.strip())
    parts = [p for p in raw.split(b"/") if p]
    if not raw.startswith(b"/"):
        parts = [b"**", *parts]
    return parts


def _match(pattern: list[bytes], path: list[bytes], prefix_ok: bool) -> bool:
    """Return whether ``pattern`` matches all of ``path``, or (``prefix_ok``) a prefix of it."""
    if not pattern:
        return prefix_ok or not path
    head = pattern[0]
    if head == b"**":
        return any(_match(pattern[1:], path[i:], prefix_ok) for i in range(len(path) + 1))
    if not path:
        return False
    if not _part_regex(head).match(path[0]):
        return False
    return _match(pattern[1:], path[1:], prefix_ok)


def _could_match_below(pattern: list[bytes], path: list[bytes]) -> bool:
    """Return whether some path below ``path`` could match ``pattern``."""
    if not path:
        return True
    if not pattern:
        return False
    head = pattern[0]
    if head == b"**":
        return True
    if not _part_regex(head).match(path[0]):
        return False
    return _could_match_below(pattern[1:], path[1:])


class PatternSet:
    """A list of patterns; matches a path when any pattern does."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p for p in patterns if p.strip()]
        self._compiled = [_split(p) for p in self.patterns]

    def __bool__(self) -> bool:
        return bool(self._compiled)

    @staticmethod
    def _parts(path: bytes | str) -> list[bytes]:
        return [p for p in os.fsencode(path).split(b"/") if p]

    def matches(self, path: bytes | str) -> bool:
        """Return whether the absolute ``path`` (or one of its parents) matches a pattern."""
        parts = self._parts(path)
        return any(_match(p, parts, prefix_ok=True) for p in self._compiled)

    def may_match_below(self, path: bytes | str) -> bool:
        """Return whether a path inside the directory ``path`` could match a pattern."""
        parts = self._parts(path)
        return any(_could_match_below(p, parts) for p in self._compiled)

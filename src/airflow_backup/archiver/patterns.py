"""Path patterns for ``--exclude`` and ``--include``, with restic's semantics.

A pattern is split on ``/`` and each part is a Go ``filepath.Match`` glob; ``**`` matches
any number of path components. A pattern that does not start with ``/`` may match anywhere
(it is implicitly prefixed with ``**/``). A pattern matches a path when it matches the path
or one of its parents, so excluding a directory excludes everything below it. Patterns are
cleaned (``a/../b`` is ``b``). A pattern starting with ``!`` is negated: in order, a path
matched by an earlier pattern and by a negated one is not matched any more (restic's rule, so
``$HOME/**/*`` then ``!$HOME/Documents`` keeps Documents and what is in it).
"""

from __future__ import annotations

import os
import posixpath
import re
from functools import lru_cache

__all__ = ["PatternSet"]


def _translate(part: bytes) -> bytes:
    """Translate one Go ``filepath.Match`` pattern component into a regex.

    ``*`` is any run of characters, ``?`` one character, ``[...]`` a class (``[^...]`` negated;
    ``!`` is an ordinary character, unlike fnmatch), ``\\`` escapes the next character.
    A malformed class matches nothing, as Go reports ErrBadPattern.
    """
    out = bytearray()
    i, n = 0, len(part)
    while i < n:
        c = part[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(part[i : i + 1])
        elif c == b"[":
            end = i + 1
            if end < n and part[end : end + 1] == b"^":
                end += 1
            if end < n and part[end : end + 1] == b"]":
                end += 1
            while end < n and part[end : end + 1] != b"]":
                end += 2 if part[end : end + 1] == b"\\" else 1
            if end >= n:
                return b"(?!)"  # unterminated class: never matches
            body = part[i + 1 : end]
            negate = body.startswith(b"^")
            if negate:
                body = body[1:]
            cls = bytearray()
            j = 0
            while j < len(body):
                ch = body[j : j + 1]
                if ch == b"\\" and j + 1 < len(body):
                    j += 1
                    ch = body[j : j + 1]
                if ch in (b"\\", b"]", b"^", b"[") :
                    cls += b"\\" + ch
                else:
                    cls += ch
                j += 1
            out += b"[" + (b"^" if negate else b"") + bytes(cls) + b"]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return b"(?s:" + bytes(out) + b")\\Z"


@lru_cache(maxsize=4096)
def _part_regex(part: bytes) -> re.Pattern[bytes]:
    return re.compile(_translate(part))


def _split(pattern: str) -> list[bytes]:
    raw = os.fsencode(posixpath.normpath(pattern.strip()))
    parts = [p for p in raw.split(b"/") if p and p != b"."]
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
    """A list of patterns; matches a path when a pattern does and no later negated one
    (``!pattern``) does."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p for p in patterns if p.strip() and p.strip() != "!"]
        self._compiled = [(p.strip().startswith("!"), _split(p.strip().removeprefix("!")))
                          for p in self.patterns]

    def __bool__(self) -> bool:
        return bool(self._compiled)

    @staticmethod
    def _parts(path: bytes | str) -> list[bytes]:
        return [p for p in os.fsencode(path).split(b"/") if p]

    def matches(self, path: bytes | str) -> bool:
        """Return whether the absolute ``path`` (or one of its parents) matches a pattern."""
        parts = self._parts(path)
        matched = False
        for negated, p in self._compiled:
            if negated:
                matched = matched and not _match(p, parts, prefix_ok=True)
            elif not matched:
                matched = _match(p, parts, prefix_ok=True)
        return matched

    def may_match_below(self, path: bytes | str) -> bool:
        """Return whether a path inside the directory ``path`` could match a pattern."""
        parts = self._parts(path)
        may = False
        for negated, p in self._compiled:
            if negated:
                may = may and not _match(p, parts, prefix_ok=True)
            elif not may:
                may = _could_match_below(p, parts)
        return may

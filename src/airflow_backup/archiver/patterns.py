"""Path patterns for ``--exclude`` and ``--include``, with restic's semantics.

A pattern is split on ``/`` and each part is a Go ``filepath.Match`` glob; ``**`` matches
any number of path components. A pattern that does not start with ``/`` may match anywhere
(it is implicitly prefixed with ``**/``). A pattern matches a path when it matches the path
or one of its parents, so excluding a directory excludes everything below it. Patterns are
cleaned (``a/../b`` is ``b``). A pattern starting with ``!`` is negated: in order, a path
matched by an earlier pattern and by a negated one is not matched any more (restic's rule, so
``$HOME/**/*`` then ``!$HOME/Documents`` keeps Documents and what is in it).

Matching is by character, as Go's is by rune: names are decoded as UTF-8 with each invalid
byte standing for itself (``surrogateescape``), so ``?`` matches ``é`` (two bytes) or one
invalid byte. ``PatternSet(..., fold_case=True)`` matches as restic's ``--iexclude``: pattern
and path are both lower-cased the way Go's ``strings.ToLower`` does it (:func:`go_lower`).
"""

from __future__ import annotations

import os
import posixpath
import re
from functools import lru_cache

__all__ = ["PatternSet", "go_lower"]


def _translate(part: str) -> str:
    """Translate one Go ``filepath.Match`` pattern component into a regex.

    ``*`` is any run of characters, ``?`` one character, ``[...]`` a class (``[^...]`` negated;
    ``!`` is an ordinary character, unlike fnmatch), ``\\`` escapes the next character.
    A malformed class matches nothing, as Go reports ErrBadPattern.
    """
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(part[i]))
        elif c == "[":
            end = i + 1
            if end < n and part[end] == "^":
                end += 1
            if end < n and part[end] == "]":
                end += 1
            while end < n and part[end] != "]":
                end += 2 if part[end] == "\\" else 1
            if end >= n:
                return "(?!)"  # unterminated class: never matches
            body = part[i + 1 : end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            cls: list[str] = []
            j = 0
            while j < len(body):
                ch = body[j]
                if ch == "\\" and j + 1 < len(body):
                    j += 1
                    ch = body[j]
                cls.append("\\" + ch if ch in "\\]^[" else ch)
                j += 1
            out.append("[" + ("^" if negate else "") + "".join(cls) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "(?s:" + "".join(out) + ")\\Z"


@lru_cache(maxsize=4096)
def _part_regex(part: str) -> re.Pattern[str]:
    return re.compile(_translate(part))


class _GoLower(dict[int, str]):
    """``str.translate`` table of Go's ``unicode.ToLower``, filled on first use of each code
    point: the simple one-to-one lower case (Python's ``str.lower`` also applies the
    one-to-many and context-dependent rules: ``İ`` → ``i̇``, a final ``Σ`` → ``ς``), and
    U+FFFD for an invalid byte (``strings.ToLower`` replaces each with it)."""

    def __missing__(self, cp: int) -> str:
        if 0xDC80 <= cp <= 0xDCFF:  # surrogateescape'd invalid byte
            low = "\ufffd"
        else:
            low = chr(cp).lower()
            if len(low) != 1:
                low = "i" if cp == 0x130 else chr(cp)
        self[cp] = low
        return low


_GO_LOWER = _GoLower()


def go_lower(text: str) -> str:
    """Return ``text`` (a name decoded with ``surrogateescape``) lower-cased as Go's
    ``strings.ToLower`` does on its bytes."""
    if text.isascii():
        return text.lower()
    return text.translate(_GO_LOWER)


def _split(pattern: str) -> list[str]:
    raw = posixpath.normpath(pattern.strip())
    parts = [p for p in raw.split("/") if p and p != "."]
    if not raw.startswith("/"):
        parts = ["**", *parts]
    return parts


def _match(pattern: list[str], path: list[str], prefix_ok: bool) -> bool:
    """Return whether ``pattern`` matches all of ``path``, or (``prefix_ok``) a prefix of it."""
    if not pattern:
        return prefix_ok or not path
    head = pattern[0]
    if head == "**":
        return any(_match(pattern[1:], path[i:], prefix_ok) for i in range(len(path) + 1))
    if not path:
        return False
    if not _part_regex(head).match(path[0]):
        return False
    return _match(pattern[1:], path[1:], prefix_ok)


def _could_match_below(pattern: list[str], path: list[str]) -> bool:
    """Return whether some path below ``path`` could match ``pattern``."""
    if not path:
        return True
    if not pattern:
        return False
    head = pattern[0]
    if head == "**":
        return True
    if not _part_regex(head).match(path[0]):
        return False
    return _could_match_below(pattern[1:], path[1:])


class PatternSet:
    """A list of patterns; matches a path when a pattern does and no later negated one
    (``!pattern``) does. With ``fold_case``, patterns and paths are compared lower-cased
    (restic's ``--iexclude``)."""

    def __init__(self, patterns: list[str], fold_case: bool = False) -> None:
        self.patterns = [p for p in patterns if p.strip() and p.strip() != "!"]
        self.fold_case = fold_case
        fold = go_lower if fold_case else str
        self._compiled = [(p.strip().startswith("!"),
                           _split(fold(p.strip().removeprefix("!"))))
                          for p in self.patterns]

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def _parts(self, path: bytes | str) -> list[str]:
        text = os.fsdecode(path)
        if self.fold_case:
            text = go_lower(text)
        return [p for p in text.split("/") if p]

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

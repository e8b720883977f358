"""What a backup leaves out: restic's exclusion rules (``restic backup``'s exclude flags).

A path is left out, with everything below it, when one of these rejects it:

* ``excludes`` / ``iexcludes``: patterns (:mod:`airflow_backup.archiver.patterns`), the
  second set compared lower-cased (``--iexclude``);
* ``if_present`` (``--exclude-if-present NAME[:HEADER]``, and ``--exclude-caches``, which is
  ``CACHEDIR.TAG`` with the cache directory signature): an entry whose directory holds a file
  ``NAME`` (that starts with ``HEADER``, if given) is rejected unless it is that file itself.
  So the directory stays, holding only its marker file; a tag file that exists but does not
  qualify (too short, another header, unreadable) leaves the directory alone, with a warning;
* ``larger_than`` (``--exclude-larger-than``): anything but a directory whose ``lstat`` size
  is larger (a symbolic link's size is the length of its target, as restic compares it);
* ``one_file_system`` (``-x``): an entry on another device than the nearest backup target
  that holds it; a directory on another device whose parent is not (a mount point) is kept,
  empty, as restic keeps it.

Restic applies these rules to every path it saves, targets included (a target whose parent
directory holds a marker file is left out), but not to the directories it only passes through:
the intermediate directories above a target and, when a target lies inside another one, every
directory from the outer target down to the inner one (restic "unrolls" them). Those are never
rejected here either, so that ``-x / /home`` backs up both file systems, as with restic.

:class:`Exclusions` decides from a path, its name, its ``lstat`` result and the marker files
of its directory (:meth:`Exclusions.tags`, looked up once per directory listing); the same
object's answers feed the walk, the metadata warm-up and the known-directory check
(:mod:`airflow_backup.archiver.known`), so a directory's fingerprint is always that of the
entries the backup keeps.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from airflow_backup.archiver.nodes import StatLike
from airflow_backup.archiver.options import BackupOptions
from airflow_backup.archiver.patterns import PatternSet
from airflow_backup.errors import ConfigError
from airflow_backup.repository.gojson import go_quote_name

__all__ = ["CACHEDIR_TAG", "NO_TAGS", "Exclusions", "parse_size", "parse_tag_spec"]

#: ``--exclude-caches``: the Cache Directory Tagging Specification's file and signature.
CACHEDIR_TAG = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55"

#: No marker file in a directory.
NO_TAGS: frozenset[bytes] = frozenset()

_UNITS = {ord("b"): 1, ord("B"): 1, ord("k"): 1 << 10, ord("K"): 1 << 10,
          ord("m"): 1 << 20, ord("M"): 1 << 20, ord("g"): 1 << 30, ord("G"): 1 << 30,
          ord("t"): 1 << 40, ord("T"): 1 << 40}
_DECIMAL = re.compile(rb"[+-]?[0-9]+")
_INT64 = 1 << 63


def parse_size(text: str) -> int:
    """Return the bytes of a size as restic's ``--exclude-larger-than`` reads it: a base-10
    integer (an optional sign, no spaces, no fraction) and an optional last letter ``b``,
    ``k``, ``m``, ``g`` or ``t`` (either case; powers of 1024). As in restic, the product
    wraps around at 64 bits. Raise ConfigError for anything else."""
    raw = os.fsencode(text)
    if not raw:
        raise ConfigError("invalid size '': expected a size, got an empty string")
    unit = _UNITS.get(raw[-1])
    digits = raw if unit is None else raw[:-1]
    problem = ""
    if not _DECIMAL.fullmatch(digits):
        problem = "invalid syntax"
    elif not -_INT64 <= int(digits) < _INT64:
        problem = "value out of range"
    if problem:
        raise ConfigError(f'invalid size {text!r}: parsing "{go_quote_name(digits)}": '
                          f"{problem} (use bytes, or a number followed by K, M, G or T)")
    value = (int(digits) * (unit or 1)) % (1 << 64)
    return value - (1 << 64) if value >= _INT64 else value


def parse_tag_spec(spec: str) -> tuple[bytes, bytes]:
    """Return (file name, header) of an ``--exclude-if-present`` value ``NAME[:HEADER]``
    (the header may hold colons; empty means any content). Raise ConfigError without a
    name."""
    raw = os.fsencode(spec)
    if not raw:
        raise ConfigError("name for exclusion tagfile is empty")
    name, colon, header = raw.partition(b":")
    if colon and not name:
        raise ConfigError(f"no name for exclusion tagfile provided in {spec!r}")
    return name, header


def _quoted(path: bytes) -> str:
    return f'"{go_quote_name(path)}"'


def _plain_name(name: bytes) -> bool:
    return b"/" not in name and name not in (b".", b"..")


class Exclusions:
    """The exclusion rules of one backup of ``targets`` (see the module doc).

    ``warn`` receives the warnings about marker files that exist but do not qualify, once
    per file and header; :attr:`warned` keeps them all (see :meth:`adopt_warnings`).
    """

    def __init__(self, *, excludes: Sequence[str] = (), iexcludes: Sequence[str] = (),
                 if_present: Sequence[str] = (), exclude_caches: bool = False,
                 larger_than: int | None = None, one_file_system: bool = False,
                 targets: Iterable[str | bytes] = (),
                 warn: Callable[[str], None] | None = None) -> None:
        self._patterns = PatternSet(list(excludes))
        self._ipatterns = PatternSet(list(iexcludes), fold_case=True)
        specs = [*if_present, *([CACHEDIR_TAG] if exclude_caches else [])]
        self._tags = [parse_tag_spec(s) for s in specs]
        self._larger_than = larger_than
        self.warn = warn
        #: (marker file, header) -> the warning given about it, in order.
        self.warned: dict[tuple[bytes, bytes], str] = {}
        paths = sorted({os.fsencode(os.path.abspath(os.fsdecode(t))) for t in targets})
        self._ways = _unrolled(paths)
        self._devices: dict[bytes, int] | None = None
        if one_file_system:
            self._devices = {}
            for t in paths:
                try:
                    self._devices[t] = os.lstat(t).st_dev
                except OSError:
                    continue  # a missing target is reported (and skipped) by the walk
        self._nearest = lru_cache(maxsize=4096)(self._nearest_device)
        self._active = bool(self._patterns or self._ipatterns or self._tags
                            or larger_than is not None or one_file_system)
        self.key = (tuple(excludes), tuple(iexcludes), tuple(specs), larger_than,
                    one_file_system, tuple(paths))
        self.scope = [*(f"iexclude:{p}" for p in iexcludes),
                      *(f"exclude-if-present:{s}" for s in specs),
                      *([f"exclude-larger-than:{larger_than}"] if larger_than is not None
                        else []),
                      *(["one-file-system"] if one_file_system else [])]
        """What, besides the ``excludes``, the known-directory cache's scope must hold."""

    @classmethod
    def of(cls, options: BackupOptions, warn: Callable[[str], None] | None = None
           ) -> Exclusions:
        """Return the rules of a backup with ``options`` (of its ``paths``)."""
        return cls(excludes=options.excludes, iexcludes=options.iexcludes,
                   if_present=options.exclude_if_present,
                   exclude_caches=options.exclude_caches,
                   larger_than=options.exclude_larger_than,
                   one_file_system=options.one_file_system, targets=options.paths, warn=warn)

    def __bool__(self) -> bool:
        return self._active

    # ---- by name -------------------------------------------------------------------------

    def tags(self, directory: bytes, names: Sequence[bytes] | None = None) -> frozenset[bytes]:
        """Return the names of the qualifying marker files in ``directory`` (whose entries,
        all but those files, are left out). ``names``: its entries, if already listed."""
        if not self._tags:
            return NO_TAGS
        found = set()
        prefix = directory.rstrip(b"/") + b"/"
        for name, header in self._tags:
            if name in found:
                continue
            listed = names is not None and _plain_name(name)
            if listed:
                assert names is not None
                if name not in names:
                    continue
                path = prefix + name
            else:  # restic joins (and cleans) the directory and the name, then lstats
                path = os.fsencode(posixpath.normpath(os.fsdecode(prefix + name)))
            if self._qualifies(path, header, listed):
                found.add(name)
        return frozenset(found)

    def _qualifies(self, path: bytes, header: bytes, listed: bool) -> bool:
        """Return whether the marker file ``path`` (``listed``: known to exist) makes its
        directory excluded: it exists and, given a ``header``, starts with it."""
        if not listed:
            try:
                os.lstat(path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                self._warn(path, header, "could not access exclusion tagfile: lstat "
                           f"{os.fsdecode(path)}: {_go_error(exc)}")
                return False
        if not header:
            return True
        try:
            # Non-blocking: a FIFO named like a marker file must not stall the backup.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            self._warn(path, header, "could not open exclusion tagfile: open "
                       f"{os.fsdecode(path)}: {_go_error(exc)}")
            return False
        try:
            got = b""
            while len(got) < len(header):
                chunk = os.read(fd, len(header) - len(got))
                if not chunk:
                    break
                got += chunk
        except OSError as exc:
            self._warn(path, header, "could not read signature from exclusion tagfile "
                       f"{_quoted(path)}: read {os.fsdecode(path)}: {_go_error(exc)}")
            return False
        finally:
            os.close(fd)
        if not got:
            self._warn(path, header,
                       f"invalid (too short) signature in exclusion tagfile {_quoted(path)}")
            return False
        if len(got) < len(header):
            self._warn(path, header, "could not read signature from exclusion tagfile "
                       f"{_quoted(path)}: unexpected EOF")
            return False
        if got != header:
            self._warn(path, header, f"invalid signature in exclusion tagfile {_quoted(path)}")
            return False
        return True

    def _warn(self, path: bytes, header: bytes, message: str) -> None:
        if (path, header) not in self.warned:
            self.warned[(path, header)] = message
            if self.warn is not None:
                self.warn(message)

    def adopt_warnings(self, other: Exclusions) -> None:
        """Give (to ``warn``) the warnings ``other`` gave and this one did not: those of
        directories whose listings another reader (the metadata warm-up) took."""
        for key, message in list(other.warned.items()):
            self._warn(*key, message)

    def rejects_name(self, path: bytes, name: bytes, tags: frozenset[bytes]) -> bool:
        """Return whether ``path`` (named ``name``, in a directory holding the marker files
        ``tags``: see :meth:`tags`) is left out by its name."""
        if path in self._ways:
            return False
        if tags and any(t != name for t in tags):
            return True
        if self._patterns and self._patterns.matches(path):
            return True
        return bool(self._ipatterns) and self._ipatterns.matches(path)

    def rejects_target(self, path: bytes) -> bool:
        """Return whether the backup target ``path`` is left out by its name (its parent
        directory's marker files included)."""
        parent, name = posixpath.split(path)
        return self.rejects_name(path, name, self.tags(parent or b"/"))

    # ---- by lstat ------------------------------------------------------------------------

    def rejects_stat(self, path: bytes, s: StatLike) -> bool:
        """Return whether ``path``, whose ``lstat`` result is ``s``, is left out by its size
        or device."""
        if path in self._ways:
            return False
        is_dir = stat.S_ISDIR(s.st_mode)
        if self._larger_than is not None and not is_dir and s.st_size > self._larger_than:
            return True
        if self._devices is None or self._allowed(path, s.st_dev):
            return False
        if not is_dir:
            return True
        # A mount point stays (empty): its parent directory is on an allowed device.
        parent = posixpath.dirname(path)
        try:
            return not self._allowed(parent, os.lstat(parent).st_dev)
        except OSError:
            return True

    def _allowed(self, path: bytes, dev: int) -> bool:
        """Return whether ``dev`` is the device of the nearest target holding ``path``."""
        assert self._devices is not None
        own = self._devices.get(path)
        if own is not None:
            return own == dev
        return self._nearest(posixpath.dirname(path)) == dev

    def _nearest_device(self, directory: bytes) -> int | None:
        assert self._devices is not None
        while True:
            dev = self._devices.get(directory)
            if dev is not None:
                return dev
            up = posixpath.dirname(directory)
            if up == directory:
                return None
            directory = up


def _unrolled(targets: Sequence[bytes]) -> frozenset[bytes]:
    """Return the directories restic passes through without selecting them: those from a
    target down to (not including) another target inside it."""
    inside = set(targets)
    ways: set[bytes] = set()
    for t in targets:
        chain: list[bytes] = []
        cur = t
        while (up := posixpath.dirname(cur)) != cur:
            chain.append(up)
            if up in inside:
                ways.update(chain)
                chain = []
            cur = up
    return frozenset(ways)


def _go_error(exc: OSError) -> str:
    """Return the text of Go's error for ``exc``'s errno (strerror, lower-case first)."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]

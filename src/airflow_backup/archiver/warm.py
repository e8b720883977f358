"""Warm the kernel's inode and dentry caches for a backup's paths while the key is derived.

Opening a repository spends most of its time in scrypt (slow by design), which
releases the interpreter lock and uses one core. With a cold page cache, the walk that follows
waits for the disk at every ``lstat``, one at a time. :class:`MetadataWarmer` walks the same
paths in a background thread during the key derivation, so that those waits are paid while the
process would otherwise only be waiting for scrypt. It reads no file contents and reports
nothing. It does keep what it saw, directory by directory, for the backup's walk to use instead
of listing and ``lstat``-ing again (:meth:`MetadataWarmer.take_listing`): a directory where
anything failed is not kept, so the walk meets (and reports) every error itself.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Self

from airflow_backup.archiver.exclude import Exclusions

__all__ = ["BackgroundWalk", "Listing", "MetadataWarmer", "SlimStat", "read_listing"]


class SlimStat:
    """The fields of ``archiver.nodes.StatLike``, without the rest of an ``os.stat_result``."""

    __slots__ = ("st_atime_ns", "st_ctime_ns", "st_dev", "st_gid", "st_ino", "st_mode",
                 "st_mtime_ns", "st_nlink", "st_rdev", "st_size", "st_uid")

    def __init__(self, mode: int, ino: int, dev: int, nlink: int, uid: int, gid: int,
                 size: int, rdev: int, atime_ns: int, mtime_ns: int, ctime_ns: int) -> None:
        self.st_mode = mode
        self.st_ino = ino
        self.st_dev = dev
        self.st_nlink = nlink
        self.st_uid = uid
        self.st_gid = gid
        self.st_size = size
        self.st_rdev = rdev
        self.st_atime_ns = atime_ns
        self.st_mtime_ns = mtime_ns
        self.st_ctime_ns = ctime_ns


# The lstat fields of SlimStat but the access time, packed: 68 bytes an entry, a fraction
# of what objects take. Access times are kept apart: reading a file may change its access
# time, and a directory's fingerprint (archiver.known) must not change with it.
_FIELDS = struct.Struct("<IQQQIIqQqq")


class Listing:
    """A directory's entries in name order with their lstat results, packed, and what the
    known-directory check needs of them: the regular files' count and ``size`` in bytes,
    the sub-directories' names and the owners (uid, gid) met."""

    __slots__ = ("_atimes", "_digest", "_names", "_stats", "files", "owners", "size",
                 "subdirs")

    def __init__(self) -> None:
        self._names: list[bytes] = []
        self._stats = bytearray()
        self._atimes = array("q")
        self._digest: bytes | None = None
        self.files = 0
        self.size = 0
        self.subdirs: list[bytes] = []
        self.owners: set[tuple[int, int]] = set()

    def add(self, name: bytes, s: os.stat_result) -> None:
        """Append an entry (in name order)."""
        self._names.append(name)
        self._stats += _FIELDS.pack(s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid,
                                    s.st_gid, s.st_size, s.st_rdev, s.st_mtime_ns,
                                    s.st_ctime_ns)
        self._atimes.append(s.st_atime_ns)
        self.owners.add((s.st_uid, s.st_gid))
        if stat.S_ISREG(s.st_mode):
            self.files += 1
            self.size += s.st_size
        elif stat.S_ISDIR(s.st_mode):
            self.subdirs.append(name)

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[tuple[bytes, SlimStat]]:
        fields = _FIELDS.iter_unpack(self._stats)
        for name, atime, (mode, ino, dev, nlink, uid, gid, size, rdev, mtime, ctime) in zip(
                self._names, self._atimes, fields, strict=True):
            yield name, SlimStat(mode, ino, dev, nlink, uid, gid, size, rdev, atime, mtime,
                                 ctime)

    def digest(self) -> bytes:
        """Return the SHA-256 of the entries but for their access times: the names (which
        hold no NUL) and every lstat field, in order. Call once the listing is complete."""
        if self._digest is None:
            material = b"%d\0%s\0%s" % (len(self._names), b"\0".join(self._names),
                                          bytes(self._stats))
            self._digest = hashlib.sha256(material).digest()
        return self._digest


def read_listing(top: bytes, exclusions: Exclusions,
                 stopped: Callable[[], bool] = lambda: False) -> Listing | None:
    """List directory ``top`` and ``lstat`` its entries, leaving out those ``exclusions``
    reject. Return None if it cannot be listed, an entry cannot be ``lstat``-ed, or
    ``stopped()`` turns true on the way: the backup's walk then meets (and reports) the
    problem itself."""
    try:
        with os.scandir(top) as it:
            names = sorted(e.name for e in it)
    except OSError:
        return None
    prefix = top.rstrip(b"/") + b"/"
    listing = Listing()
    active = bool(exclusions)
    tags = exclusions.tags(top, names)
    for name in names:
        if stopped():
            return None
        path = prefix + name
        if active and exclusions.rejects_name(path, name, tags):
            continue
        try:
            s = os.lstat(path)
        except OSError:
            return None
        if active and exclusions.rejects_stat(path, s):
            continue
        listing.add(name, s)
    return listing


# Entries kept for the walk, at most (about 120 bytes each); past that it only warms.
_KEEP_MAX = 262_144
# Listings older than this are not used: the walk waited (for a lock, say) and should look
# at the file system again.
_MAX_AGE = 30.0


class BackgroundWalk:
    """A context manager running :meth:`_walk` in a daemon thread from the start of the
    block until it returns or the block exits (the thread is then told to stop, through
    :meth:`stopped`, and waited for). Nothing runs when there are no targets."""

    _thread_name = "walk"

    def __init__(self, paths: Sequence[str]) -> None:
        self._targets = sorted({os.fsencode(os.path.abspath(p)) for p in paths})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if self._targets:
            self._thread = threading.Thread(target=self._walk, name=self._thread_name,
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def stopped(self) -> bool:
        """Return whether the walk was told to stop."""
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the walk to finish; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _walk(self) -> None:
        raise NotImplementedError


class MetadataWarmer(BackgroundWalk):
    """A context manager: ``lstat`` everything below ``paths`` (skipping ``excludes``, or
    what ``exclusions`` rejects: the backup's rules) in a background thread, in the backup
    walk's order, until the block exits.

    Leaving the block stops the thread and waits for it; an entry that cannot be read is
    skipped silently. Given no paths (a stream backup), it does nothing.
    """

    _thread_name = "warm-metadata"

    def __init__(self, paths: Sequence[str], excludes: Sequence[str] = (), *,
                 exclusions: Exclusions | None = None) -> None:
        super().__init__(paths)
        #: The rules its listings were read with: the walk takes them only under the same.
        self.exclusions = exclusions if exclusions is not None else Exclusions(
            excludes=excludes, targets=paths)
        self.visited = 0
        self._listings: dict[bytes, Listing] = {}
        self._kept = 0
        self._started = time.monotonic()

    def forget(self) -> None:
        """Drop every listing kept (the walk will not use them)."""
        self._listings.clear()

    def take_listing(self, path: bytes) -> Listing | None:
        """Return and forget the entries of directory ``path`` (absolute, as the walk spells
        it) with their lstat results, excluded ones left out, if the warm-up kept them and
        they are recent; otherwise None (the caller lists the directory itself)."""
        if not self._listings:
            return None
        if time.monotonic() - self._started > _MAX_AGE:
            self._listings.clear()
            return None
        return self._listings.pop(path, None)

    def _walk(self) -> None:
        stack = list(reversed(self._targets))
        stopped = self.stopped
        while stack and not stopped():
            top = stack.pop()
            listing = read_listing(top, self.exclusions, stopped)
            if listing is None:
                continue  # not a directory, unreadable, or stopped: the walk will see
            self.visited += len(listing)
            if self._kept < _KEEP_MAX:
                self._kept += len(listing)
                self._listings[top] = listing
            prefix = top.rstrip(b"/") + b"/"
            stack.extend(prefix + name for name in reversed(listing.subdirs))

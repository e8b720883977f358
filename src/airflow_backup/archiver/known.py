"""Known directories: skip the parent's trees where a whole directory is unchanged.

An unchanged re-backup still compares every file with its node in the parent snapshot, and
to do so decrypts and parses every tree of the parent, a large part of the whole command.
Yet a directory whose entries all have the same ``lstat`` fields as at the last backup, and
whose sub-directories are all known, gives the same tree as then: restic's rule for
unchanged files (same inode, size, mtime and ctime means same content), applied to a whole
directory at once, and ctime moves on every change of mode, owner, links or extended
attributes.

So after a successful backup the client remembers, per directory, a *fingerprint* and the
tree id it produced. The fingerprint is an HMAC, under a key derived from the repository's
master key, of the backup's options (host, paths and every exclusion rule: the *scope*), the
directory's entries that the exclusion rules keep (names and every ``lstat`` field but the
access time), their owners' names and the tree ids of its sub-directories.
The next backup with a parent computes the fingerprints bottom-up from the listings (most of
them already read by the metadata warm-up during the key derivation) and takes a known
directory's tree id without loading any tree below it, if the index still holds that tree.

The file lives in the cache directory, ``<cache root>/<repository id>/dirs/<scope>``, one per
host, paths and exclusion rules, sealed with the master key (AES-256-CTR and Poly1305, as every
repository file): it holds tree ids and counts, and nothing in it can be read or changed
without the key. It names the snapshot that holds every tree it lists, and is used only
while that snapshot exists: a snapshot keeps its trees and their data from being pruned,
whereas a tree merely still indexed may have lost data blobs to a prune. It is best effort:
a missing, stale, damaged or unreadable file only means every directory is compared the
usual way. ``--force`` does not use it (and remembers what it read), ``--no-cache`` and
``--with-atime`` leave it alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from airflow_backup.archiver.exclude import Exclusions
from airflow_backup.archiver.nodes import group_name, user_name
from airflow_backup.archiver.warm import Listing, read_listing
from airflow_backup.errors import IntegrityError
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.atomic import replace_file

__all__ = ["DirCache", "KnownDirs", "Subtree", "Walked", "dir_cache_path"]

_MAGIC = b"airflow-backup known dirs v1\n"
_RECORD = struct.Struct("<32s32sQQQ")  # fingerprint, tree id, files, bytes, dirs below


@dataclass(frozen=True, slots=True)
class Subtree:
    """What a directory's tree holds: its id, and the regular files (with their bytes) and
    directories below it, which a backup counts as unmodified when it reuses the tree."""

    tree_id: bytes
    files: int
    size: int
    dirs: int


def dir_cache_path(root: str | os.PathLike[str], repo: Repository, scope: bytes) -> Path:
    """Return where the known directories of backups with ``scope`` (see
    :meth:`DirCache.scope`) into ``repo`` live under cache root ``root``."""
    return Path(root) / repo.config.id / "dirs" / scope.hex()[:32]


class DirCache:
    """Fingerprint → :class:`Subtree` of the directories of one earlier backup, and those of
    the running one (saved by :meth:`save` once its snapshot is stored)."""

    def __init__(self, key: Key, scope: bytes, path: Path | None = None) -> None:
        self._mac_key = hmac.digest(key.encrypt + key.mac_k + key.mac_r,
                                    b"airflow-backup known directories", "sha256")
        self._key = key
        self._scope = scope
        self._path = path
        self._known: dict[bytes, Subtree] = {}
        self._seen: dict[bytes, Subtree] = {}

    @staticmethod
    def scope(hostname: str, paths: Sequence[str], excludes: Sequence[str],
              rules: Sequence[str] = ()) -> bytes:
        """Return the digest of what, besides the file system, decides a backup's trees:
        the host, the paths, the exclude patterns and the other exclusion ``rules``
        (:attr:`Exclusions.scope <airflow_backup.archiver.exclude.Exclusions.scope>`), so
        that backups with other exclusion flags never share remembered trees."""
        parts = [hostname, *sorted(paths), "\0", *excludes]
        if rules:  # without them the digest is the one of earlier versions: files stay valid
            parts += ["\0", *rules]
        return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).digest()

    @classmethod
    def load(cls, path: Path, key: Key, scope: bytes,
             snapshot_exists: Callable[[str], bool]) -> DirCache:
        """Return the directories known from ``path``; none if it is missing, damaged,
        sealed with another key, written for another scope, or if the snapshot holding its
        trees is gone (``snapshot_exists(id)`` says)."""
        cache = cls(key, scope, path)
        try:
            plain = key.open(path.read_bytes(), what=str(path))
        except (OSError, IntegrityError):
            return cache
        head = len(_MAGIC) + 64
        if (plain[: len(_MAGIC)] != _MAGIC or plain[len(_MAGIC) : len(_MAGIC) + 32] != scope
                or (len(plain) - head) % _RECORD.size
                or not snapshot_exists(plain[len(_MAGIC) + 32 : head].hex())):
            return cache
        for fp, tree_id, files, size, dirs in _RECORD.iter_unpack(memoryview(plain)[head:]):
            cache._known[fp] = Subtree(tree_id, files, size, dirs)
        return cache

    def __len__(self) -> int:
        return len(self._known)

    def fingerprint(self, digest: bytes, owners: AbstractSet[tuple[int, int]],
                    child_trees: Sequence[bytes]) -> bytes:
        """Return the fingerprint of a directory: ``digest``, the SHA-256 of its entries
        (:meth:`Listing.digest`), its entries' owners (names included: a renamed user
        changes the nodes) and its sub-directories' tree ids in name order."""
        names = "\n".join(f"{u}:{user_name(u)}:{g}:{group_name(g)}" for u, g in sorted(owners))
        mac = hmac.new(self._mac_key, self._scope, "sha256")
        mac.update(digest)
        mac.update(names.encode("utf-8", "surrogateescape") + b"\0")
        mac.update(b"".join(child_trees))
        return mac.digest()

    def lookup(self, fp: bytes, repo: Repository) -> Subtree | None:
        """Return the known subtree with fingerprint ``fp`` if its tree is still indexed."""
        found = self._known.get(fp)
        if found is None or not repo.index.has(BlobType.TREE, found.tree_id):
            return None
        self._seen[fp] = found
        return found

    def remember(self, fp: bytes, subtree: Subtree) -> None:
        """Record a directory of the running backup."""
        self._seen[fp] = subtree

    def save(self, snapshot_id: str) -> None:
        """Replace the file with the running backup's directories, all in the trees of
        snapshot ``snapshot_id``; best effort (a cache that cannot be written is only a
        slower next backup)."""
        if self._path is None or not self._seen:
            return
        body = b"".join(_RECORD.pack(fp, s.tree_id, s.files, s.size, s.dirs)
                        for fp, s in self._seen.items())
        sealed = self._key.seal(_MAGIC + self._scope + bytes.fromhex(snapshot_id) + body)
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            replace_file(self._path, sealed)


@dataclass(frozen=True, slots=True)
class Walked:
    """What the backup's walk saw of a directory, enough to remember it once its tree is
    written: the digest of its entries, their owners, its files and bytes, its sub-dirs."""

    digest: bytes
    owners: frozenset[tuple[int, int]]
    files: int
    size: int
    subdirs: tuple[bytes, ...]

    @classmethod
    def of(cls, listing: Listing) -> Walked:
        """Return the summary of ``listing``."""
        return cls(listing.digest(), frozenset(listing.owners), listing.files, listing.size,
                   tuple(listing.subdirs))


class KnownDirs:
    """The known-directory check of one backup.

    :meth:`check` walks a target's directories bottom-up from their listings alone and
    returns, per directory, the subtree remembered for its fingerprint, or None;
    :meth:`written` remembers each directory the walk had to build, and :meth:`save` stores
    them all once the snapshot is saved. Listings of directories found unknown are held for
    the walk (up to ``hold`` entries), so it need not ``lstat`` them again.
    """

    def __init__(self, repo: Repository, cache: DirCache, exclusions: Exclusions,
                 listings: Callable[[bytes], Listing | None], hold: int = 262_144) -> None:
        self._repo = repo
        self._cache = cache
        self._exclusions = exclusions
        self._listings = listings
        self._checked: dict[bytes, Subtree | None] = {}
        self._held: dict[bytes, Listing] = {}
        self._hold = hold
        self._done: dict[bytes, Subtree] = {}  # directories resolved, for their parent

    def check(self, path: bytes) -> Subtree | None:
        """Return the remembered subtree of directory ``path`` if it is unchanged, checking
        every directory below it on the way (once: the walk asks again as it goes down)."""
        if path in self._checked:
            return self._checked.pop(path)
        listing = self._listings(path) or read_listing(path, self._exclusions)
        if listing is None:
            return None  # the walk meets (and reports) the problem itself
        prefix = path.rstrip(b"/") + b"/"
        children = [self.check(prefix + name) for name in listing.subdirs]
        found: Subtree | None = None
        if all(c is not None for c in children):
            fp = self._cache.fingerprint(listing.digest(), listing.owners,
                                         [c.tree_id for c in children if c is not None])
            found = self._cache.lookup(fp, self._repo)
        if found is None:
            # The walk goes into this directory: keep what it will ask about.
            for name, child in zip(listing.subdirs, children, strict=True):
                self._checked[prefix + name] = child
            if self._hold >= len(listing):
                self._hold -= len(listing)
                self._held[path] = listing
        return found

    def take_listing(self, path: bytes) -> Listing | None:
        """Return (once) the listing :meth:`check` read of a directory it found unknown."""
        return self._held.pop(path, None)

    def reused(self, path: bytes, subtree: Subtree) -> None:
        """Note that the walk took directory ``path``'s remembered subtree."""
        self._done[path] = subtree

    def written(self, path: bytes, walked: Walked, tree_id: bytes) -> None:
        """Remember directory ``path``, whose tree the walk built from ``walked``, if every
        sub-directory it listed was resolved (none failed)."""
        prefix = path.rstrip(b"/") + b"/"
        children = [self._done.pop(prefix + name, None) for name in walked.subdirs]
        if any(c is None for c in children):
            return
        kids = [c for c in children if c is not None]
        fp = self._cache.fingerprint(walked.digest, walked.owners,
                                     [c.tree_id for c in kids])
        subtree = Subtree(tree_id, walked.files + sum(c.files for c in kids),
                          walked.size + sum(c.size for c in kids),
                          sum(1 + c.dirs for c in kids))
        self._cache.remember(fp, subtree)
        self._done[path] = subtree

    def save(self, snapshot_id: str) -> None:
        """Store the directories of this backup, whose snapshot is ``snapshot_id``, for the
        next one (best effort)."""
        self._cache.save(snapshot_id)

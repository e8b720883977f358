"""Prune: delete data no snapshot references, and repack packs that are mostly unused.

The caller holds an exclusive lock. :func:`plan_prune` only reads; :func:`execute_prune`
changes the repository in restic's crash-safe order:

1. write new packs holding the still-used blobs of the packs being repacked;
2. write new index files naming every pack that stays (kept packs and the new ones);
3. delete every old index file;
4. delete the packs that are now unreferenced (unused, repacked, or never indexed).

A crash after any single step leaves a repository restic accepts: until step 3 every old
index file still names existing packs; after it, the packs left over are merely unreferenced,
which ``check`` reports as a hint and the next prune deletes. Packs are chosen for repacking
the way restic 0.14 does (``cmd_prune.go`` ``decidePackAction``).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, IntegrityError, NotFound
from airflow_backup.repository.packer import PackWriter
from airflow_backup.repository.packfiles import (
    BlobKey,
    expected_pack_size,
    merge_index_files,
    pack_type,
    write_index,
)
from airflow_backup.repository.packs import BlobType, PackedBlob
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.storage.base import FileType, Handle

__all__ = [
    "PruneOptions",
    "PrunePlan",
    "PruneResult",
    "PruneStats",
    "execute_prune",
    "parse_size",
    "plan_prune",
    "referenced_blobs",
    "unused_limit",
]

Progress = Callable[[str, int, int], None]
_SMALL_PACKS_TO_REPACK = 10  # restic repacks small packs only once there are this many
_SIZE = re.compile(r"^(\d+)([kKmMgGtT]?)$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Given restic's size syntax (``500``, ``10k``, ``2M``, ``1g``, ``1T``; binary units),
    return bytes. Raise ConfigError if malformed."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise ConfigError(f"invalid size {text!r}: use a number with an optional k/m/g/t suffix")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def unused_limit(spec: str) -> Callable[[int], float]:
    """Given ``--max-unused`` (``5%``, a size, or ``unlimited``), return a function from the
    used bytes to the unused bytes tolerated after pruning. Raise ConfigError if invalid."""
    spec = spec.strip()
    if spec == "unlimited":
        return lambda used: float("inf")
    if spec.endswith("%"):
        try:
            p = float(spec[:-1])
        except ValueError:
            raise ConfigError(f"invalid --max-unused {spec!r}") from None
        if not 0 <= p < 100:
            raise ConfigError("--max-unused percentage must be at least 0% and below 100%")
        # p% of the total after pruning: unused / (used + unused) = p / 100
        return lambda used: p / (100 - p) * used
    size = parse_size(spec)
    return lambda used: float(size)


@dataclass(slots=True)
class PruneOptions:
    """restic's prune options: tolerated unused share, repack limit, small-pack repacking."""

    max_unused: str = "5%"
    max_repack_size: str = ""
    repack_small: bool = False


@dataclass(slots=True)
class PruneStats:
    """What the plan found (sizes are stored bytes of blobs) and what it will do."""

    used_blobs: int = 0
    used_size: int = 0
    duplicate_blobs: int = 0
    duplicate_size: int = 0
    unused_blobs: int = 0
    unused_size: int = 0
    unreferenced_size: int = 0
    remove_blobs: int = 0
    remove_size: int = 0
    repack_blobs: int = 0
    repack_size: int = 0
    repack_freed_blobs: int = 0
    repack_freed_size: int = 0
    packs_keep: int = 0
    packs_repack: int = 0
    packs_remove: int = 0
    packs_unreferenced: int = 0
    packs_missing_unneeded: int = 0
    #: Packs by use, as restic counts them: every blob used, some, none.
    packs_used: int = 0
    packs_partly_used: int = 0
    packs_unused: int = 0
    #: Bytes of kept packs holding blobs stored uncompressed (restic's "not yet compressed").
    uncompressed_size: int = 0

    @property
    def freed_size(self) -> int:
        """Return the stored bytes the prune deletes."""
        return self.remove_size + self.repack_freed_size + self.unreferenced_size


@dataclass(slots=True)
class _PackUsage:
    pack: bytes
    type: BlobType | None
    size: int
    used_blobs: int = 0
    unused_blobs: int = 0
    used_size: int = 0
    unused_size: int = 0
    uncompressed_tree: bool = False
    uncompressed: bool = False


@dataclass(slots=True)
class PrunePlan:
    """What :func:`execute_prune` will do; ``packs`` is every pack the index names."""

    index_ids: list[str]
    packs: dict[bytes, list[PackedBlob]]
    keep: set[bytes] = field(default_factory=set)
    repack: list[bytes] = field(default_factory=list)
    remove: set[bytes] = field(default_factory=set)
    missing_unneeded: set[bytes] = field(default_factory=set)
    unreferenced: dict[str, int] = field(default_factory=dict)
    keep_blobs: set[BlobKey] = field(default_factory=set)
    stats: PruneStats = field(default_factory=PruneStats)

    @property
    def rewrites_index(self) -> bool:
        """Return whether the index must be rewritten (some indexed pack goes away)."""
        return bool(self.repack or self.remove or self.missing_unneeded)

    @property
    def nothing_to_do(self) -> bool:
        """Return whether the repository is already clean."""
        return not self.rewrites_index and not self.unreferenced


@dataclass(slots=True)
class PruneResult:
    """What :func:`execute_prune` did."""

    packs_written: int = 0
    index_files_written: int = 0
    index_files_removed: int = 0
    packs_removed: int = 0


def referenced_blobs(repo: Repository, snapshots: Iterable[Snapshot],
                     progress: Progress | None = None) -> set[BlobKey]:
    """Given snapshots, return every tree and data blob they reference. Raise IntegrityError
    if a tree cannot be loaded (then nothing can safely be deleted)."""
    used: set[BlobKey] = set()
    stack = [sn.tree for sn in snapshots]
    trees = 0
    while stack:
        tree = stack.pop()
        if (BlobType.TREE, tree) in used:
            continue
        used.add((BlobType.TREE, tree))
        trees += 1
        if progress and trees % 1000 == 0:
            progress("trees", trees, 0)
        for node in repo.load_tree(tree):
            if node.type == "file":
                used.update((BlobType.DATA, c) for c in node.content or [])
            elif node.subtree is not None:
                stack.append(node.subtree)
    return used


def plan_prune(repo: Repository, options: PruneOptions | None = None, *,
               ignore_snapshots: Iterable[str] = (), progress: Progress | None = None
               ) -> PrunePlan:
    """Given a repository (exclusively locked by the caller), return what a prune would
    delete and repack; snapshots in ``ignore_snapshots`` count as already forgotten.

    Raise IntegrityError, and plan nothing, if data still referenced is missing from the
    index or from storage, or a pack's size disagrees with the index (run ``check`` and
    ``repair index`` first); raise ConfigError on invalid options.
    """
    options = options or PruneOptions()
    limit = unused_limit(options.max_unused)
    max_repack = parse_size(options.max_repack_size) if options.max_repack_size else None
    files = repo.load_index_files()
    packs, _ = merge_index_files(files)
    ignored = set(ignore_snapshots)
    used = referenced_blobs(repo, [s for s in repo.list_snapshots() if s.id not in ignored],
                            progress)
    stored = {i.name: i.size for i in repo.storage.list(FileType.DATA)}
    plan = PrunePlan(index_ids=[i for i, _ in files], packs=packs)
    st = plan.stats

    locations: dict[BlobKey, list[bytes]] = {}
    for pack_id, blobs in packs.items():
        for b in blobs:
            locations.setdefault((b.type, b.id), []).append(pack_id)
    not_indexed = [k for k in used if k not in locations]
    if not_indexed:
        t, i = not_indexed[0]
        raise IntegrityError(f"{len(not_indexed)} blob(s) still referenced are not in the index "
                             f"(first: {t.value} {i.hex()}); refusing to prune. Run 'check'.")
    # One copy of each used blob counts as used: prefer a stored pack that holds many
    # blobs no other pack has.
    sole = Counter(locs[0] for k, locs in locations.items() if k in used and len(locs) == 1)
    chosen = {k: max(locations[k], key=lambda p: (p.hex() in stored, sole[p], p)) for k in used}

    usage: dict[bytes, _PackUsage] = {}
    for pack_id, blobs in packs.items():
        u = _PackUsage(pack_id, pack_type(blobs), expected_pack_size(blobs))
        u.used_size = u.size - sum(b.length for b in blobs)  # the header counts as used
        counted: set[BlobKey] = set()
        for b in blobs:
            k = (b.type, b.id)
            if k in used and chosen[k] == pack_id and k not in counted:
                counted.add(k)
                u.used_blobs += 1
                u.used_size += b.length
                st.used_blobs += 1
                st.used_size += b.length
            else:
                u.unused_blobs += 1
                u.unused_size += b.length
                if k in used:
                    st.duplicate_blobs += 1
                    st.duplicate_size += b.length
                else:
                    st.unused_blobs += 1
                    st.unused_size += b.length
            if _compress_on_repack(repo, b):
                u.uncompressed_tree = True
            if not b.compressed:
                u.uncompressed = True
        usage[pack_id] = u

    small = repo.pack_size * 4 // 5 if options.repack_small else repo.pack_size // 25
    candidates: list[_PackUsage] = []
    small_full: list[_PackUsage] = []
    missing_needed: list[str] = []
    for pack_id, u in usage.items():
        name = pack_id.hex()
        if name not in stored:
            if u.used_blobs:
                missing_needed.append(name)
            else:
                plan.missing_unneeded.add(pack_id)
                st.packs_missing_unneeded += 1
            continue
        if not u.used_blobs:
            st.packs_unused += 1
        elif u.unused_blobs:
            st.packs_partly_used += 1
        else:
            st.packs_used += 1
        if u.uncompressed and repo.config.version >= 2:
            st.uncompressed_size += u.size
        if u.used_blobs and stored[name] != u.size:
            raise IntegrityError(f"pack {name}: size {stored[name]} differs from the {u.size} "
                                 "bytes the index implies; run 'repair index' first")
        if u.used_blobs == 0:
            plan.remove.add(pack_id)
            st.remove_blobs += u.unused_blobs
            st.remove_size += u.unused_size
        elif u.unused_blobs == 0 and u.type is not None and not u.uncompressed_tree:
            if stored[name] >= small:
                plan.keep.add(pack_id)
            else:
                small_full.append(u)
        else:
            candidates.append(u)
    if missing_needed:
        raise IntegrityError(f"{len(missing_needed)} pack(s) named by the index and still "
                             f"needed are missing (first: {missing_needed[0]}); refusing to "
                             "prune. Run 'check', then 'repair index' and 'repair snapshots'.")
    if len(small_full) < _SMALL_PACKS_TO_REPACK:
        plan.keep.update(u.pack for u in small_full)
    else:
        candidates += small_full

    def order(u: _PackUsage) -> tuple[bool, bool, float, bytes]:
        return (u.type is BlobType.DATA, u.size >= small, -u.unused_size / u.used_size, u.pack)

    max_after = limit(st.used_size)
    all_unused = st.unused_size + st.duplicate_size
    for u in sorted(candidates, key=order):
        unused_after = all_unused - st.remove_size - st.repack_freed_size
        if max_repack is not None and st.repack_size + u.size >= max_repack:
            plan.keep.add(u.pack)
        elif (u.type is not BlobType.DATA or u.uncompressed_tree
              or not (unused_after < max_after and u.size >= small)):
            plan.repack.append(u.pack)
            st.repack_blobs += u.used_blobs + u.unused_blobs
            st.repack_size += u.size
            st.repack_freed_blobs += u.unused_blobs
            st.repack_freed_size += u.unused_size
            if u.uncompressed and repo.config.version >= 2:
                st.uncompressed_size -= u.size
        else:
            plan.keep.add(u.pack)
    st.packs_keep, st.packs_repack = len(plan.keep), len(plan.repack)
    st.packs_remove = len(plan.remove)
    plan.unreferenced = {n: s for n, s in stored.items() if bytes.fromhex(n) not in packs}
    st.packs_unreferenced = len(plan.unreferenced)
    st.unreferenced_size = sum(plan.unreferenced.values())
    plan.keep_blobs = {k for k in used if not any(p in plan.keep for p in locations[k])}
    return plan


def _compress_on_repack(repo: Repository, blob: PackedBlob) -> bool:
    """Return whether a kept blob must be stored again compressed: a tree a version-2
    repository holds uncompressed (restic repacks those); other blobs move as they are."""
    return blob.type is BlobType.TREE and not blob.compressed and repo.version >= 2


def execute_prune(repo: Repository, plan: PrunePlan,
                  progress: Progress | None = None) -> PruneResult:
    """Carry out ``plan`` in the crash-safe order of the module docstring; return counts.

    Raise IntegrityError before deleting anything if a blob that must be kept cannot be
    read from the pack being repacked.
    """
    result = PruneResult()
    storage = repo.storage
    new_packs: dict[bytes, list[PackedBlob]] = {}

    def saved(pack_id: bytes, blobs: list[PackedBlob]) -> None:
        new_packs[pack_id] = blobs

    writers = {t: PackWriter(storage, repo.key, t, saved, version=repo.version,
                             compress_data=repo.compress_data, target_size=repo.pack_size)
               for t in BlobType}
    remaining = set(plan.keep_blobs)
    for i, pack_id in enumerate(plan.repack):
        name = pack_id.hex()
        data = storage.load(Handle(FileType.DATA, name))
        for b in sorted(plan.packs[pack_id], key=lambda b: b.offset):
            if (b.type, b.id) in remaining:
                sealed = data[b.offset : b.offset + b.length]
                plain = repo.decode_blob(name, b, sealed)  # verified: MAC, then SHA-256
                if _compress_on_repack(repo, b):
                    writers[b.type].add(b.id, plain)
                else:
                    # Kept as it was stored: a blob's sealed bytes do not depend on its pack,
                    # so they move without a second compression and encryption.
                    writers[b.type].add_sealed(b.id, sealed, b.uncompressed_length)
                remaining.discard((b.type, b.id))
        if progress:
            progress("repack", i + 1, len(plan.repack))
    for w in writers.values():
        w.flush()
    result.packs_written = len(new_packs)
    if remaining:
        raise IntegrityError(f"{len(remaining)} blob(s) to keep were not found in the packs "
                             "being repacked; nothing was deleted")

    if plan.rewrites_index:
        final = {p: plan.packs[p] for p in sorted(plan.keep)}
        final.update(new_packs)
        result.index_files_written = write_index(repo, final)
        for index_id in plan.index_ids:
            with contextlib.suppress(NotFound):
                storage.remove(Handle(FileType.INDEX, index_id))
                result.index_files_removed += 1
    doomed = sorted(p.hex() for p in plan.remove | set(plan.repack)) + sorted(plan.unreferenced)
    for n, name in enumerate(doomed):
        with contextlib.suppress(NotFound):
            storage.remove(Handle(FileType.DATA, name))
            result.packs_removed += 1
        if progress:
            progress("delete", n + 1, len(doomed))
    repo.reset_index()
    return result

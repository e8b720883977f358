"""Repairs with restic's semantics: rebuild the index from the packs, and rewrite snapshots
whose data is gone.

``repair index`` reads every pack's header and writes index files describing exactly what is
stored, then deletes the old index files (new index first, so a crash leaves both). With
``read_all_packs`` it reads whole packs, verifies every blob, and copies the intact blobs of a
damaged pack into new packs; the damaged pack is then no longer indexed and the next prune
deletes it.

``repair snapshots`` rewrites each snapshot as restic does: a file keeps only the data blobs
that are still stored (its size becomes their total), a directory whose listing cannot be read
becomes an empty directory, nodes of invalid type are dropped, and a snapshot whose root tree
is unreadable is deleted. A rewritten snapshot gets the tag ``repaired`` (unless the old one
is forgotten), ``original`` pointing at the first snapshot of the chain, and, under
``airflow_backup.repaired``, the list of what was lost. A snapshot file that is itself damaged
or malformed (named by its id) cannot be rewritten: ``forget`` removes it, otherwise it is
reported and left.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from airflow_backup.errors import IntegrityError, NotFound
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.packer import PackWriter
from airflow_backup.repository.packfiles import (
    BlobKey,
    load_pack_header,
    merge_index_files,
    write_index,
)
from airflow_backup.repository.packs import BlobType, PackedBlob, read_pack_header
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node, encode_tree
from airflow_backup.storage.base import FileType, Handle

__all__ = [
    "IndexRepair",
    "SnapshotRepair",
    "repair_index",
    "repair_snapshots",
]

Progress = Callable[[str, int, int], None]
REPAIRED_TAG = "repaired"
_VALID_TYPES = {"file", "dir", "symlink", "socket", "chardev", "dev", "fifo"}


@dataclass(slots=True)
class IndexRepair:
    """What ``repair index`` did: packs indexed, packs skipped (unreadable), blobs salvaged
    from damaged packs, and index files written and removed."""

    packs_indexed: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    salvaged_blobs: int = 0
    lost_blobs: int = 0
    index_files_written: int = 0
    index_files_removed: int = 0


def repair_index(repo: Repository, *, read_all_packs: bool = False,
                 progress: Progress | None = None) -> IndexRepair:
    """Given a repository (exclusively locked by the caller), rebuild its index from the
    packs; return what was done. Packs whose header cannot be read are left unindexed."""
    result = IndexRepair()
    old_ids = repo.list_index_ids()
    stored = sorted((i.name, i.size) for i in repo.storage.list(FileType.DATA))
    packs: dict[bytes, list[PackedBlob]] = {}

    def saved(pack_id: bytes, blobs: list[PackedBlob]) -> None:
        packs[pack_id] = blobs

    writers = {t: PackWriter(repo.storage, repo.key, t, saved, version=repo.version,
                             compress_data=repo.compress_data, target_size=repo.pack_size)
               for t in BlobType}
    for n, (name, size) in enumerate(stored):
        if progress:
            progress("packs", n + 1, len(stored))
        try:
            if not read_all_packs:
                packs[bytes.fromhex(name)] = load_pack_header(repo.storage, repo.key, name, size)
                continue
            data = repo.storage.load(Handle(FileType.DATA, name))
            blobs = read_pack_header(data, repo.key, f"pack {name}")
        except (IntegrityError, NotFound, ValueError) as exc:
            result.unreadable[name] = str(exc)
            continue
        if hashlib.sha256(data).hexdigest() == name:
            packs[bytes.fromhex(name)] = blobs
            continue
        result.unreadable[name] = "content does not match its id; intact blobs were copied"
        for b in blobs:
            try:
                plain = repo.decode_blob(name, b, data[b.offset : b.offset + b.length])
            except IntegrityError:
                result.lost_blobs += 1
                continue
            writers[b.type].add(b.id, plain)
            result.salvaged_blobs += 1
    for w in writers.values():
        w.flush()
    result.packs_indexed = len(packs)
    result.index_files_written = write_index(repo, packs)
    for index_id in old_ids:
        with contextlib.suppress(NotFound):
            repo.storage.remove(Handle(FileType.INDEX, index_id))
            result.index_files_removed += 1
    repo.reset_index()
    return result


@dataclass(slots=True)
class SnapshotRepair:
    """The outcome for one snapshot: ``status`` is ``unchanged``, ``repaired``, ``removed``
    (root unreadable, or a damaged snapshot file with ``forget``) or ``damaged`` (a damaged
    snapshot file left in place); ``new_id`` is the rewritten snapshot (empty on a dry run);
    ``lost`` lists (path, what was lost)."""

    snapshot: Snapshot
    status: str
    new_id: str = ""
    lost: list[tuple[str, str]] = field(default_factory=list)


class _Rewriter:
    def __init__(self, repo: Repository, dry_run: bool) -> None:
        self.repo = repo
        self.dry_run = dry_run
        files = repo.load_index_files()
        packs, _ = merge_index_files(files)
        stored = {i.name for i in repo.storage.list(FileType.DATA)}
        self.sizes: dict[BlobKey, int] = {}
        for pack_id, blobs in packs.items():
            if pack_id.hex() in stored:
                for b in blobs:
                    self.sizes[(b.type, b.id)] = b.plain_length
        self.memo: dict[bytes, tuple[bytes | None, list[tuple[str, str]]]] = {}

    def save(self, nodes: list[Node]) -> bytes:
        if self.dry_run:
            return hashlib.sha256(encode_tree(nodes)).digest()
        return self.repo.save_tree(nodes)[0]

    def rewrite(self, tree_id: bytes) -> tuple[bytes | None, list[tuple[str, str]]]:
        """Return (new tree id or None if unreadable, [(relative path, what was lost)])."""
        if tree_id in self.memo:
            return self.memo[tree_id]
        try:
            if (BlobType.TREE, tree_id) not in self.sizes:
                raise IntegrityError("tree blob is not stored")
            nodes = self.repo.load_tree(tree_id)
        except (IntegrityError, NotFound):
            self.memo[tree_id] = (None, [])
            return None, []
        lost: list[tuple[str, str]] = []
        kept: list[Node] = []
        changed = False
        for node in nodes:
            rel = "/" + node.name.decode("utf-8", "backslashreplace")
            if node.type not in _VALID_TYPES:
                lost.append((rel, f"node of invalid type {node.type!r} removed"))
                changed = True
                continue
            if node.type == "file" and node.content is not None:
                content = [c for c in node.content if (BlobType.DATA, c) in self.sizes]
                size = sum(self.sizes[(BlobType.DATA, c)] for c in content)
                if len(content) != len(node.content):
                    lost.append((rel, f"{len(node.content) - len(content)} of "
                                      f"{len(node.content)} data blobs missing; file truncated "
                                      f"to {size} bytes"))
                if len(content) != len(node.content) or size != node.size:
                    node.content, node.size = content, size
                    changed = True
            elif node.type == "dir" and node.subtree is not None:
                sub, sub_lost = self.rewrite(node.subtree)
                lost += [(rel + p, what) for p, what in sub_lost]
                if sub is None:
                    lost.append((rel + "/", "directory unreadable; replaced by an empty one"))
                    sub = self.save([])
                if sub != node.subtree:
                    node.subtree = sub
                    changed = True
            kept.append(node)
        new_id = self.save(kept) if changed else tree_id
        self.memo[tree_id] = (new_id, lost)
        return new_id, lost


def repair_snapshots(repo: Repository, snapshots: Iterable[Snapshot], *, forget: bool = False,
                     dry_run: bool = False) -> list[SnapshotRepair]:
    """Given snapshots of a repository (exclusively locked by the caller), rewrite those
    whose data is missing (see the module docstring); return one result per snapshot.
    ``forget`` deletes each original after its replacement is saved, and each damaged
    snapshot file among ``snapshots`` (see :meth:`Snapshot.damaged_file`); ``dry_run``
    changes nothing."""
    rw = _Rewriter(repo, dry_run)
    results = []
    for sn in snapshots:
        if sn.damaged:
            results.append(_damaged_file(repo, sn, forget=forget, dry_run=dry_run))
            continue
        new_tree, lost = rw.rewrite(sn.tree)
        if new_tree is None:
            if not dry_run:
                repo.remove_snapshot(sn.id)
            results.append(SnapshotRepair(sn, "removed", lost=[("/", "root tree unreadable")]))
            continue
        if new_tree == sn.tree:
            results.append(SnapshotRepair(sn, "unchanged"))
            continue
        result = SnapshotRepair(sn, "repaired", lost=lost)
        if not dry_run:
            result.new_id = repo.save_snapshot(_repaired_copy(sn, new_tree, lost, forget))
            if forget:
                repo.remove_snapshot(sn.id)
        results.append(result)
    return results


def _damaged_file(repo: Repository, sn: Snapshot, *, forget: bool, dry_run: bool
                  ) -> SnapshotRepair:
    """A snapshot file that cannot be read (a :meth:`Snapshot.damaged_file` stand-in) cannot
    be rewritten: with ``forget`` it is removed (status ``removed``), otherwise it is left
    as it is (status ``damaged``)."""
    if not forget:
        return SnapshotRepair(sn, "damaged", lost=[("/", sn.damaged)])
    if not dry_run:
        with contextlib.suppress(NotFound):
            repo.remove_snapshot(sn.id)
    return SnapshotRepair(sn, "removed", lost=[("/", sn.damaged)])


def _repaired_copy(sn: Snapshot, tree: bytes, lost: list[tuple[str, str]],
                   forget: bool) -> Snapshot:
    extra: JSONObject = dict(sn.extra)
    old = extra.get("airflow_backup")
    meta: JSONObject = dict(old) if isinstance(old, dict) else {}
    meta["repaired"] = {"from": sn.id, "lost": [{"path": p, "what": w} for p, w in lost]}
    extra["airflow_backup"] = meta
    tags = list(sn.tags)
    if not forget and REPAIRED_TAG not in tags:
        tags.append(REPAIRED_TAG)
    return Snapshot(
        time=sn.time, tree=tree, paths=list(sn.paths), hostname=sn.hostname,
        username=sn.username, uid=sn.uid, gid=sn.gid, excludes=list(sn.excludes), tags=tags,
        parent=sn.parent, original=sn.original or bytes.fromhex(sn.id),
        program_version=sn.program_version, summary=sn.summary, extra=extra,
    )

"""Check a repository: structure, optionally every byte, and what any damage breaks.

Phases (each reports progress as ``(phase, done, total)``):

1. ``snapshots``: every snapshot file decrypts, matches its id and parses;
2. ``index``: every index file decrypts and parses (duplicate and mixed packs are hints);
3. ``packs``: every indexed pack exists, has the size the index implies, and its header lists
   exactly the blobs the index places in it; packs no index names are hints, as in restic;
4. ``read-data`` (``--read-data`` or a subset): the whole pack hashes to its id, and every
   blob passes its MAC, decompresses and hashes to its id;
5. ``trees``: every snapshot's trees load, are well formed, and name only indexed blobs.

A blob is *lost* when no stored copy of it is intact. The report then names, for every
snapshot, the files and directories that lost content, and the packs responsible.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from airflow_backup.errors import ConfigError, IntegrityError, NotFound
from airflow_backup.repository.names import show_name
from airflow_backup.repository.packfiles import (
    BlobKey,
    expected_pack_size,
    load_pack_header,
    merge_index_files,
    pack_type,
)
from airflow_backup.repository.packs import BlobType, PackedBlob, read_pack_header
from airflow_backup.repository.prune import parse_size
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.scratch import READ, scratch
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import Node, decode_tree
from airflow_backup.storage.base import FileType, Handle, io_workers, load_into
from airflow_backup.storage.cache import CachingStorage

__all__ = [
    "Affected",
    "CheckOptions",
    "CheckReport",
    "check_repository",
    "parse_subset",
    "select_packs",
]

Progress = Callable[[str, int, int], None]
_NODE_TYPES = {"file", "dir", "symlink", "socket", "chardev", "dev", "fifo"}
_NOT_INDEXED = "not in the index"


@dataclass(slots=True)
class CheckOptions:
    """``read_data`` reads every pack; ``read_data_subset`` reads ``n/t`` (bucket n of t by
    the first byte of the pack id), ``x%`` or ``SIZE`` (a random sample)."""

    read_data: bool = False
    read_data_subset: str = ""
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Affected:
    """A path in a snapshot whose content is lost, why, and the packs responsible."""

    path: str
    reason: str
    packs: tuple[str, ...]


@dataclass(slots=True)
class CheckReport:
    """Everything a check found. ``ok`` is False when there is any error (not for hints)."""

    errors: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    damaged_packs: dict[str, str] = field(default_factory=dict)
    damaged_snapshot_files: dict[str, str] = field(default_factory=dict)
    affected: dict[str, list[Affected]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Return whether no error was found."""
        return not self.errors

    def broken_by_pack(self) -> dict[str, dict[str, list[str]]]:
        """Return pack -> snapshot id -> the paths that pack breaks."""
        out: dict[str, dict[str, list[str]]] = {}
        for snap, items in self.affected.items():
            for a in items:
                for p in a.packs:
                    out.setdefault(p, {}).setdefault(snap, []).append(a.path)
        return out


def parse_subset(subset: str) -> tuple[str, float]:
    """Given a ``--read-data-subset`` value, return ``("bucket", n * 1000 + t)``,
    ``("percent", x)`` or ``("size", bytes)``. Raise ConfigError if it is invalid."""
    text = subset.strip()
    if "/" in text:
        try:
            n, t = (int(x) for x in text.split("/"))
        except ValueError:
            raise ConfigError(f"invalid --read-data-subset {subset!r}") from None
        if not 1 <= n <= t <= 256:
            raise ConfigError("--read-data-subset n/t needs 1 <= n <= t <= 256")
        return "bucket", n * 1000 + t
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            raise ConfigError(f"invalid --read-data-subset {subset!r}") from None
        if not 0 < pct <= 100:
            raise ConfigError("--read-data-subset x% needs 0 < x <= 100")
        return "percent", pct
    size = parse_size(text)
    if size <= 0:
        raise ConfigError("--read-data-subset SIZE needs a size above 0")
    return "size", size


def select_packs(packs: dict[bytes, int], subset: str, seed: int | None = None) -> set[bytes]:
    """Given pack ids with sizes and a ``--read-data-subset`` value, return the packs to read,
    by restic's rules: ``n/t`` takes the packs whose first id byte modulo t is n - 1; ``x%``
    a random x percent (at least one pack); ``SIZE`` a random share of that many bytes.
    Raise ConfigError if the value is invalid."""
    kind, value = parse_subset(subset)
    if kind == "bucket":
        n, t = divmod(int(value), 1000)
        return {p for p in packs if p[0] % t == n - 1}
    pct = value
    if kind == "size":
        total = sum(packs.values())
        pct = min(value, total) / total * 100 if total else 100.0
    count = int(len(packs) * pct / 100) or (1 if packs else 0)
    return set(random.Random(seed).sample(sorted(packs), count))


@dataclass(slots=True)
class _Reading:
    """What reading one pack found: whether its bytes hash to its id, its header (or why
    it is unreadable) and the blobs that failed to decode."""

    id_matches: bool
    header: set[PackedBlob] = field(default_factory=set)
    header_error: IntegrityError | None = None
    damaged: list[tuple[PackedBlob, IntegrityError]] = field(default_factory=list)


@dataclass(slots=True)
class _TreeWalk:
    """A tree being walked by :meth:`_Checker.walk`: its nodes, how far, what was found, and
    the directory entry waiting for its subtree's result."""

    tree_id: bytes
    prefix: str
    nodes: list[Node]
    first_visit: bool
    index: int = 0
    found: bool = False
    waiting: tuple[str, str] | None = None


class _Checker:
    def __init__(self, repo: Repository, options: CheckOptions, progress: Progress | None):
        self.repo = repo
        self.options = options
        self.progress = progress or (lambda phase, done, total: None)
        self.report = CheckReport()
        self.packs: dict[bytes, list[PackedBlob]] = {}
        self.stored: dict[str, int] = {}
        self.bad_copies: dict[tuple[bytes, BlobKey], str] = {}
        self.trees: dict[bytes, list[Node] | str] = {}
        self.dirty: dict[bytes, bool] = {}
        self.tree_errors_done: set[bytes] = set()
        self.locations: dict[BlobKey, list[bytes]] = {}

    def error(self, text: str) -> None:
        self.report.errors.append(text)

    def run(self) -> CheckReport:
        snaps = self.load_snapshots()
        self.load_index()
        self.check_packs()
        if self.options.read_data or self.options.read_data_subset:
            self.read_data()
        self.check_trees(snaps)
        return self.report

    def load_snapshots(self) -> list[Snapshot]:
        names = sorted(i.name for i in self.repo.storage.list(FileType.SNAPSHOT))
        snaps = []
        for i, name in enumerate(names):
            try:
                snaps.append(self.repo.load_snapshot(name))
            except (IntegrityError, NotFound) as exc:
                self.report.damaged_snapshot_files[name] = str(exc)
                self.error(f"snapshot file {name}: damaged: {exc}")
            self.progress("snapshots", i + 1, len(names))
        self.report.snapshots = len(snaps)
        return snaps

    def load_index(self) -> None:
        files = []
        ids = self.repo.list_index_ids()
        for i, index_id in enumerate(ids):
            try:
                files.append((index_id, self.repo.load_index_file(index_id)))
            except (IntegrityError, NotFound) as exc:
                self.error(f"index {index_id}: damaged: {exc}")
            self.progress("index", i + 1, len(ids))
        self.packs, named_by = merge_index_files(files)
        self.repo.set_index_packs(self.packs)
        for pack_id, blobs in self.packs.items():
            for b in blobs:
                self.locations.setdefault((b.type, b.id), []).append(pack_id)
        for pack_id, blobs in sorted(self.packs.items()):
            if len(named_by[pack_id]) > 1:
                self.report.hints.append(f"pack {pack_id.hex()}: named by "
                                         f"{len(named_by[pack_id])} index files")
            if pack_type(blobs) is None and blobs:
                self.report.hints.append(f"pack {pack_id.hex()}: mixes data and tree blobs")

    def damage_pack(self, pack_id: bytes, reason: str, blobs: list[PackedBlob]) -> None:
        self.report.damaged_packs.setdefault(pack_id.hex(), reason)
        for b in blobs:
            self.bad_copies.setdefault((pack_id, (b.type, b.id)), reason)

    def check_packs(self) -> None:
        self.stored = {i.name: i.size for i in self.repo.storage.list(FileType.DATA)}
        for name in sorted(set(self.stored) - {p.hex() for p in self.packs}):
            self.report.hints.append(f"pack {name}: not referenced in any index "
                                     "(non-critical; prune deletes it)")
        for i, (pack_id, blobs) in enumerate(sorted(self.packs.items())):
            name = pack_id.hex()
            self.progress("packs", i + 1, len(self.packs))
            size = self.stored.get(name)
            if size is None:
                self.error(f"pack {name}: missing (the index lists {len(blobs)} blobs in it)")
                self.damage_pack(pack_id, "missing", blobs)
                continue
            if size != expected_pack_size(blobs):
                self.error(f"pack {name}: size {size} differs from the "
                           f"{expected_pack_size(blobs)} bytes the index implies")
            try:
                header = set(load_pack_header(self.repo.storage, self.repo.key, name, size))
            except (IntegrityError, NotFound) as exc:
                self.error(f"pack {name}: header unreadable: {exc}")
                self.damage_pack(pack_id, "header damaged", blobs)
                continue
            self.compare_header(pack_id, blobs, header)
        self.report.packs = len(self.packs)

    def compare_header(self, pack_id: bytes, blobs: list[PackedBlob],
                       header: set[PackedBlob]) -> None:
        for b in blobs:
            if b not in header:
                self.error(f"pack {pack_id.hex()}: the index places {b.type.value} blob "
                           f"{b.id.hex()} at offset {b.offset} (length {b.length}), but the "
                           "pack header does not list it there")
                self.damage_pack(pack_id, "index disagrees with the pack header", [b])

    def read_data(self) -> None:
        existing = {p: self.stored[p.hex()] for p in self.packs if p.hex() in self.stored}
        chosen = sorted(set(existing) if self.options.read_data
                        else select_packs(existing, self.options.read_data_subset,
                                          self.options.seed))
        # Packs are read and verified in parallel (one per I/O worker: 2 threads on a local
        # disk, 8 on an object store), their findings recorded here in pack order, so the
        # report does not depend on which thread finished first.
        workers = max(1, min(io_workers(self.repo.storage), len(chosen)))
        with ThreadPoolExecutor(workers, thread_name_prefix="check-read") as pool:
            for i, (pack_id, reading) in enumerate(
                    zip(chosen, pool.map(self.read_pack, chosen), strict=True)):
                if reading is not None:
                    self.record_reading(pack_id, reading)
                self.progress("read-data", i + 1, len(chosen))
        self.report.packs_read = len(chosen)

    def read_pack(self, pack_id: bytes) -> _Reading | None:
        """Read one whole pack and verify its id, header and every blob. Return what was
        found, or None if the pack is gone (already reported as missing). Runs in a worker
        thread: it changes nothing but this thread's read buffer."""
        name = pack_id.hex()
        size = self.stored[name]
        view = scratch(size + 1, READ)[: size + 1]  # a byte more: a pack that grew is damaged
        try:
            view = view[: load_into(self.repo.storage, Handle(FileType.DATA, name), 0, view)]
        except NotFound:
            return None
        reading = _Reading(hashlib.sha256(view).digest() == pack_id)
        try:
            reading.header = set(read_pack_header(view, self.repo.key, f"pack {name}"))
        except IntegrityError as exc:
            reading.header_error = exc
        for b in self.packs[pack_id]:
            try:
                self.repo.decode_blob_into(name, b, view[b.offset : b.offset + b.length])
            except IntegrityError as exc:
                reading.damaged.append((b, exc))
        return reading

    def record_reading(self, pack_id: bytes, reading: _Reading) -> None:
        name = pack_id.hex()
        if not reading.id_matches:
            self.error(f"pack {name}: content does not match its id (the file is damaged)")
            self.report.damaged_packs.setdefault(name, "content does not match its id")
        if reading.header_error is not None:
            self.error(f"pack {name}: header unreadable: {reading.header_error}")
        else:
            self.compare_header(pack_id, self.packs[pack_id], reading.header)
        for b, exc in reading.damaged:
            self.error(f"pack {name}: {b.type.value} blob {b.id.hex()} is damaged: {exc}")
            self.damage_pack(pack_id, "damaged", [b])

    # ---- trees and impact -----------------------------------------------------------------

    def lost(self, key: BlobKey) -> tuple[str, tuple[str, ...]] | None:
        """Return (reason, responsible packs) if no intact copy of the blob is known."""
        copies = self.locations.get(key, [])
        if not copies:
            return _NOT_INDEXED, ()
        reasons = [self.bad_copies.get((p, key)) for p in copies]
        if all(reasons):
            return reasons[0] or "damaged", tuple(sorted(p.hex() for p in copies))
        return None

    def check_trees(self, snaps: list[Snapshot]) -> None:
        for i, sn in enumerate(snaps):
            items: list[Affected] = []
            self.walk(sn.tree, "", items)
            if items:
                self.report.affected[sn.id] = items
            self.progress("trees", i + 1, len(snaps))

    def load(self, tree_id: bytes) -> list[Node] | str:
        """Return a tree's nodes, or why no copy of it loads (an error is then recorded).
        Every stored copy not known to be bad is tried, as in restic: while another copy is
        intact, a damaged one is its pack's error, not a lost directory."""
        if tree_id not in self.trees:
            key: BlobKey = (BlobType.TREE, tree_id)
            loaded: list[Node] | str = ""
            for pack_id in self.locations.get(key, []):
                if (pack_id, key) in self.bad_copies:
                    continue
                try:
                    loaded = self.load_copy(pack_id, key)
                    break
                except (IntegrityError, NotFound) as exc:
                    # Damage --read-data did not look for: name the pack (it is the one to
                    # blame if no copy loads) rather than let the next copy hide it.
                    reason = "missing" if isinstance(exc, NotFound) else "damaged"
                    self.error(f"pack {pack_id.hex()}: tree blob {tree_id.hex()} is "
                               f"{reason}: {exc}")
                    self.report.damaged_packs.setdefault(pack_id.hex(), reason)
                    self.bad_copies[(pack_id, key)] = reason
            if not isinstance(loaded, list):
                lost = self.lost(key)
                loaded = f"tree blob {lost[0] if lost else 'damaged'}"
                self.error(f"tree {tree_id.hex()}: cannot be loaded: {loaded}")
            self.trees[tree_id] = loaded
        return self.trees[tree_id]

    def load_copy(self, pack_id: bytes, key: BlobKey) -> list[Node]:
        """Load the copy of a tree blob stored in ``pack_id``. Raise IntegrityError if it is
        damaged, NotFound if the pack is gone."""
        # Most trees have one copy, so a pack's entries are searched only when needed.
        entry = self.repo.index.lookup(*key)
        if entry is not None and entry.pack_id == pack_id:
            blob = entry.blob
        else:
            blob = next(b for b in self.packs[pack_id] if (b.type, b.id) == key)
        name = pack_id.hex()
        sealed = self.repo.storage.load(Handle(FileType.DATA, name), blob.offset, blob.length)
        return decode_tree(self.repo.decode_blob(name, blob, sealed), f"tree {key[1].hex()}")

    def walk(self, tree_id: bytes, prefix: str, out: list[Affected]) -> bool:
        """Append the damaged paths below ``tree_id``; return whether there was any. The walk
        keeps its own stack: a tree of any depth is checked (no recursion)."""
        top = self._open(tree_id, prefix, out)
        if isinstance(top, bool):
            return top
        stack = [top]
        last = False
        while stack:
            frame = stack[-1]
            if frame.waiting is not None:  # the subdirectory just walked returned ``last``
                path, problem = frame.waiting
                frame.waiting = None
                frame.found = last or frame.found
                self._note(frame, path, problem, None, out)
                continue
            if frame.index == len(frame.nodes):
                stack.pop()
                last = self._close(frame)
                continue
            node = frame.nodes[frame.index]
            frame.index += 1
            path = frame.prefix + "/" + node.name.decode("utf-8", "backslashreplace")
            problem = self.node_problem(node)
            if problem and frame.first_visit:
                self.error(f"tree {frame.tree_id.hex()}: {problem}")
            hit: Affected | None = None
            if node.type == "file":
                hit = self._file_damage(frame, node, path)
            elif node.type == "dir" and node.subtree is not None:
                child = self._open(node.subtree, path, out)
                if not isinstance(child, bool):
                    frame.waiting = (path, problem)
                    stack.append(child)
                    continue
                frame.found = child or frame.found
            self._note(frame, path, problem, hit, out)
        return last

    def _open(self, tree_id: bytes, prefix: str, out: list[Affected]) -> _TreeWalk | bool:
        """Start walking ``tree_id``: return its frame, or whether it is damaged when that is
        known without walking (a clean tree seen before, a tree that cannot be loaded)."""
        if self.dirty.get(tree_id) is False:
            return False
        nodes = self.load(tree_id)
        if isinstance(nodes, str):
            lost = self.lost((BlobType.TREE, tree_id))
            out.append(Affected(prefix + "/", f"directory contents lost: {nodes}",
                                lost[1] if lost else ()))
            return True
        first_visit = tree_id not in self.tree_errors_done
        self.tree_errors_done.add(tree_id)
        return _TreeWalk(tree_id, prefix, nodes, first_visit)

    def _file_damage(self, frame: _TreeWalk, node: Node, path: str) -> Affected | None:
        """Return what is lost of file ``node`` (its data blobs), or None."""
        content = node.content or []
        bad = [(c, lost) for c in content if (lost := self.lost((BlobType.DATA, c))) is not None]
        for c, (why, _) in bad:
            if why == _NOT_INDEXED and frame.first_visit:
                self.error(f"tree {frame.tree_id.hex()}: file '{show_name(node.name)}': data blob "
                           f"{c.hex()} not found in index")
        if not bad:
            return None
        packs = tuple(sorted({p for _, (_, ps) in bad for p in ps}))
        return Affected(path, f"{len(bad)} of {len(content)} data blobs lost ({bad[0][1][0]})",
                        packs)

    @staticmethod
    def _note(frame: _TreeWalk, path: str, problem: str, hit: Affected | None,
              out: list[Affected]) -> None:
        if hit is None and problem:
            hit = Affected(path, problem, ())
        if hit is not None:
            out.append(hit)
            frame.found = True

    def _close(self, frame: _TreeWalk) -> bool:
        self.dirty[frame.tree_id] = frame.found
        if not frame.found:
            del self.trees[frame.tree_id]  # clean trees are never walked again: less memory
        return frame.found

    @staticmethod
    def node_problem(node: Node) -> str:
        if not node.name:
            return "node with an empty name"
        if node.type not in _NODE_TYPES:
            return f"node '{show_name(node.name)}' has invalid type {node.type!r}"
        if node.type == "file" and node.content is None:
            return f"file '{show_name(node.name)}' has no content list"
        if node.type == "dir" and node.subtree is None:
            return f"dir '{show_name(node.name)}' has no subtree"
        return ""


def check_repository(repo: Repository, options: CheckOptions | None = None,
                     progress: Progress | None = None) -> CheckReport:
    """Given a repository (the caller holds a lock), return a report of everything wrong
    with it and what the damage breaks. Never raises for damage it finds; raise ConfigError
    for an invalid ``read_data_subset``.

    Every file is read from the store itself, never from the metadata cache: a cached copy
    only proves that a file was intact when it was fetched (restic, too, checks with a fresh
    cache). The check installs the index it builds in ``repo``, unless ``repo`` reads
    through a cache (then the check works on an uncached view and ``repo`` is unchanged)."""
    options = options or CheckOptions()
    if options.read_data and options.read_data_subset:
        raise ConfigError("--read-data and --read-data-subset cannot be used together")
    if options.read_data_subset:
        parse_subset(options.read_data_subset)
    return _Checker(_without_cache(repo), options, progress).run()


def _without_cache(repo: Repository) -> Repository:
    """Return ``repo`` if it reads the store directly, else the same repository (key and
    config) over the store behind its metadata cache."""
    if not isinstance(repo.storage, CachingStorage):
        return repo
    return Repository(repo.storage.inner, repo.key, repo.key_id, repo.config)

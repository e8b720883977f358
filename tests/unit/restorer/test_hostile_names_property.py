"""Property: whatever names a snapshot's trees hold (``..``, absolute, with ``/``, empty, NUL,
very long, a name twice, a symlink then a directory of its name), a salvage restore writes
nothing outside its target, raises nothing, restores every safe entry and reports every
other one, readably."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_backup.repository import gojson
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import MODE_DIR, MODE_SYMLINK, Node
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.storage.memory import MemoryStorage

T = "2024-01-01T00:00:00Z"
ABSOLUTE = b"/airflow-backup-property-abs"  # must never appear at the file system's root
_BYTES_REPR = re.compile(r"""(^|[\s(\[{,:=])b['"]""")


@dataclass
class Entry:
    name: bytes
    kind: str  # file, dir, symlink
    data: bytes = b""
    children: list[Entry] = field(default_factory=list)


safe_names = st.one_of(
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]),
            min_size=1, max_size=12).map(lambda t: t.encode()),
    st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")),
    st.sampled_from([b"a", b"b", b"link", b"..."]),  # collisions: a name twice in a directory
).filter(lambda n: n not in (b".", b".."))
hostile_names = st.one_of(
    st.sampled_from([b"", b".", b"..", b"../escaped", b"../../escaped", b"a/b", b"a/../..",
                     ABSOLUTE, ABSOLUTE + b"/x", b"/", b"nul\0byte", b"\0", b"..\0",
                     b"x" * 300, b"\xff" * 256]),
    st.tuples(safe_names, safe_names).map(lambda p: p[0] + b"/" + p[1]),
    st.tuples(safe_names, safe_names).map(lambda p: p[0] + b"\0" + p[1]),
)
names = st.one_of(safe_names, hostile_names)
leaves = st.one_of(
    st.builds(Entry, names, st.just("file"), st.binary(max_size=40)),
    st.builds(Entry, names, st.just("symlink")),
)
entries = st.recursive(
    leaves,
    lambda inner: st.builds(Entry, names, st.just("dir"), st.just(b""),
                            st.lists(inner, max_size=6)),
    max_leaves=25,
)
roots = st.lists(entries, min_size=1, max_size=8)


def _restorable(name: bytes) -> bool:
    """The test's own rule: one path component a file system can hold."""
    return (bool(name) and name not in (b".", b"..") and b"/" not in name and b"\0" not in name
            and len(name) <= 255)


def _save(repo: Repository, entries: list[Entry], outside: bytes) -> bytes:
    """Store ``entries`` as a tree (children first), names in the order given."""
    nodes = []
    for e in entries:
        if e.kind == "dir":
            nodes.append(Node(name=e.name, type="dir", mode=MODE_DIR | 0o755, mtime=T,
                              atime=T, ctime=T, subtree=_save(repo, e.children, outside)))
        elif e.kind == "symlink":
            nodes.append(Node(name=e.name, type="symlink", mode=MODE_SYMLINK | 0o777, mtime=T,
                              atime=T, ctime=T, linktarget=outside))
        else:
            blob_id, _ = repo.save_blob(BlobType.DATA, e.data)
            nodes.append(Node(name=e.name, type="file", mode=0o644, mtime=T, atime=T, ctime=T,
                              size=len(e.data), content=[blob_id] if e.data else []))
    data = gojson.dumps({"nodes": [n.to_json() for n in nodes]}) + b"\n"
    return repo.save_blob(BlobType.TREE, data)[0]


def _expect(entries: list[Entry], here: bytes) -> tuple[dict[bytes, Entry], int]:
    """Return the entries that must be restored (by target path) and how many items must
    be reported: per directory the first entry of each restorable name; a skipped directory's
    content is neither."""
    restored: dict[bytes, Entry] = {}
    skipped = 0
    seen: set[bytes] = set()
    for e in entries:
        if not _restorable(e.name) or e.name in seen:
            skipped += 1
            continue
        seen.add(e.name)
        path = here + b"/" + e.name
        restored[path] = e
        if e.kind == "dir":
            below, n = _expect(e.children, path)
            restored.update(below)
            skipped += n
    return restored, skipped


def _listing(root: str, skip: str) -> set[str]:
    out: set[str] = set()
    for d, dirs, files in os.walk(root):
        if d == skip:
            dirs[:] = []
            continue
        out.update(os.path.join(d, n) for n in dirs + files)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(roots)
def test_hostile_names_never_escape_and_every_safe_entry_is_restored(
        tree: list[Entry]) -> None:
    sandbox = tempfile.mkdtemp(prefix="hostile-")
    try:
        outside = os.path.join(sandbox, "outside")
        os.mkdir(outside)
        target = os.path.join(sandbox, "deep", "er", "target")  # room for ../../escaped
        os.makedirs(target)
        before = _listing(sandbox, target)
        repo = Repository.init(MemoryStorage(), "pw")
        sn = Snapshot(time=T, tree=_save(repo, tree, os.fsencode(outside)), paths=["/x"])
        repo.save_snapshot(sn)

        stats = Restorer(repo, workers=2).restore(sn, RestoreOptions(target=target,
                                                                     salvage=True))

        assert _listing(sandbox, target) == before | {target}
        assert os.listdir(outside) == []
        assert not os.path.lexists(os.fsdecode(ABSOLUTE))
        want, skipped = _expect(tree, os.fsencode(target))
        for path, e in want.items():
            if e.kind == "file":
                with open(path, "rb") as f:
                    assert f.read() == e.data, path
            elif e.kind == "symlink":
                assert os.readlink(path) == os.fsencode(outside), path
            else:
                assert os.path.isdir(path) and not os.path.islink(path), path
        got = {os.fsencode(os.path.join(d, n)) for d, dirs, files in os.walk(os.fsencode(target))
               for n in dirs + files}
        assert got == set(want)
        assert len(stats.errors) == skipped
        for shown, reason in stats.errors:
            assert shown.isprintable() and reason.isprintable(), (shown, reason)
            assert not _BYTES_REPR.search(shown + " " + reason), (shown, reason)
    finally:
        shutil.rmtree(sandbox)

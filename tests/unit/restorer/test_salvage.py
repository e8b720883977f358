"""Salvage restore: whatever is damaged, every file whose data is intact comes back exactly,
each item that does not is named with a readable reason, no incomplete file is left, and
every directory gets its metadata."""

from __future__ import annotations

import os
import random
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.errors import IntegrityError, RestoreError, UnsafePath
from airflow_backup.repository import gojson
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import MODE_DIR, MODE_SYMLINK, Node
from airflow_backup.restorer.filler import FileJob
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.restorer.walk import show_name, walk_tree
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.memory import MemoryStorage
from support.salvage import file_nodes, packs_of

T = "2024-01-01T00:00:00Z"
DIR_MTIME = 1_600_000_000


@pytest.fixture
def backed_up(tmp_path: Path) -> Iterator[tuple[Repository, MemoryStorage, Snapshot, Path]]:
    """Six 3 MiB random files and 60 small ones over three directories (0750, a fixed
    mtime), in 1 MiB packs: every pack holds blobs of a few files only."""
    rng = random.Random(42)
    src = tmp_path / "src"
    for d in ("big", "small", "small/sub"):
        (src / d).mkdir(parents=True)
    for i in range(6):
        (src / "big" / f"b{i}").write_bytes(rng.randbytes(3 << 20))
    for i in range(60):
        where = src / ("small/sub" if i % 3 == 0 else "small")
        (where / f"s{i:02}").write_bytes(rng.randbytes(rng.randint(1, 30_000)))
    for sub in (src / "small/sub", src / "small", src / "big", src):
        sub.chmod(0o750)
        os.utime(sub, (DIR_MTIME, DIR_MTIME))
    storage = MemoryStorage()
    repo = Repository.init(storage, "pw")
    repo.pack_size = 1 << 20
    snap = Archiver(repo).backup(BackupOptions(paths=[str(src)])).snapshot
    yield repo, storage, snap, src


def _check_restored(target: Path, files: dict[str, Node], lost: set[str]) -> None:
    """Every file not in ``lost`` is byte-exact; every lost one is absent."""
    for path in files:
        restored = target / path.lstrip("/")
        if path in lost:
            assert not restored.exists(), path
        else:
            assert restored.read_bytes() == Path(path).read_bytes(), path


_BYTES_REPR = re.compile(r"""(^|[\s(\[{,:=])b['"]""")


def _assert_readable(errors: list[tuple[str, str]]) -> None:
    """Paths and reasons are printable text, with no Python bytes repr (b'...')."""
    for path, reason in errors:
        assert path.isprintable() and reason.isprintable(), (path, reason)
        assert not _BYTES_REPR.search(path) and not _BYTES_REPR.search(reason), (path, reason)


def test_a_missing_pack_loses_only_the_files_that_need_it(
        backed_up: tuple[Repository, MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    repo, storage, snap, src = backed_up
    files = file_nodes(repo, snap)
    victim = packs_of(repo, files[str(src / "big" / "b2")]).pop()
    lost = {p for p, n in files.items() if victim in packs_of(repo, n)}
    assert 0 < len(lost) < len(files)
    storage.remove(Handle(FileType.DATA, victim.hex()))

    target = tmp_path / "out"
    stats = Restorer(repo, workers=2).restore(snap, RestoreOptions(target=str(target),
                                                                   salvage=True))
    _check_restored(target, files, lost)
    assert sorted(p for p, _ in stats.errors) == sorted(lost)
    assert all(victim.hex() in reason and "missing" in reason for _, reason in stats.errors)
    _assert_readable(stats.errors)
    assert stats.files == len(files) - len(lost)
    # The directories got their metadata although some of their content failed.
    for d in ("big", "small", "small/sub", ""):
        got = (target / str(src).lstrip("/") / d).stat()
        assert stat.S_IMODE(got.st_mode) == 0o750, d
        assert got.st_mtime == DIR_MTIME, d


def test_strict_mode_restores_the_rest_then_raises_integrity_error(
        backed_up: tuple[Repository, MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    repo, storage, snap, src = backed_up
    files = file_nodes(repo, snap)
    victim = packs_of(repo, files[str(src / "big" / "b0")]).pop()
    lost = {p for p, n in files.items() if victim in packs_of(repo, n)}
    storage.remove(Handle(FileType.DATA, victim.hex()))
    target = tmp_path / "out"
    restorer = Restorer(repo)
    with pytest.raises(IntegrityError, match=victim.hex()):
        restorer.restore(snap, RestoreOptions(target=str(target)))
    _check_restored(target, files, lost)
    assert sorted(p for p, _ in restorer.stats.errors) == sorted(lost)


def test_one_flipped_byte_loses_only_the_file_of_that_blob(
        backed_up: tuple[Repository, MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    repo, storage, snap, src = backed_up
    files = file_nodes(repo, snap)
    victim = str(src / "small" / "s07")
    node = files[victim]
    entry = repo.index.lookup(BlobType.DATA, (node.content or [])[0])
    assert entry is not None
    # Other files' blobs share that pack.
    assert any(entry.pack_id in packs_of(repo, n) for p, n in files.items() if p != victim)
    handle = Handle(FileType.DATA, entry.pack_id.hex())
    raw = bytearray(storage.load(handle))
    raw[entry.blob.offset + entry.blob.length // 2] ^= 0x01
    storage.corrupt(handle, bytes(raw))

    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), salvage=True))
    _check_restored(target, files, {victim})
    assert [p for p, _ in stats.errors] == [victim]
    assert "damaged" in stats.errors[0][1]
    _assert_readable(stats.errors)


def test_an_unreadable_tree_loses_only_its_directory(
        backed_up: tuple[Repository, MemoryStorage, Snapshot, Path], tmp_path: Path) -> None:
    repo, storage, snap, src = backed_up
    files = file_nodes(repo, snap)
    sub = str(src / "small" / "sub")
    dir_node = next(n for p, n in walk_tree(repo, snap.tree) if os.fsdecode(p) == sub)
    assert dir_node.subtree is not None
    entry = repo.index.lookup(BlobType.TREE, dir_node.subtree)
    assert entry is not None
    handle = Handle(FileType.DATA, entry.pack_id.hex())
    raw = bytearray(storage.load(handle))
    raw[entry.blob.offset + 20] ^= 0x80
    storage.corrupt(handle, bytes(raw))

    target = tmp_path / "out"
    stats = Restorer(repo).restore(snap, RestoreOptions(target=str(target), salvage=True))
    lost = {p for p in files if p.startswith(sub + "/")}
    assert len(lost) == 20
    _check_restored(target, files, lost)
    assert [p for p, _ in stats.errors] == [sub]
    assert "contents are lost" in stats.errors[0][1]
    restored_sub = target / sub.lstrip("/")
    assert restored_sub.is_dir() and list(restored_sub.iterdir()) == []
    assert stat.S_IMODE(restored_sub.stat().st_mode) == 0o750
    assert restored_sub.stat().st_mtime == DIR_MTIME


def test_the_snapshot_root_tree_lost_is_one_error(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    sn = Snapshot(time=T, tree=bytes(32), paths=["/x"])
    repo.save_snapshot(sn)
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(tmp_path / "t"),
                                                      salvage=True))
    assert [p for p, _ in stats.errors] == ["/"]
    assert "not in the index" in stats.errors[0][1]


def _file(repo: Repository, name: bytes, data: bytes) -> Node:
    blob_id, _ = repo.save_blob(BlobType.DATA, data)
    return Node(name=name, type="file", mode=0o644, mtime=T, atime=T, ctime=T, size=len(data),
                content=[blob_id])


def _save_tree(repo: Repository, nodes: list[Node]) -> bytes:
    """Store a tree with ``nodes`` in the order given (save_tree refuses a name twice, as
    restic's writer does; a hostile or broken writer need not)."""
    data = gojson.dumps({"nodes": [n.to_json() for n in nodes]}) + b"\n"
    return repo.save_blob(BlobType.TREE, data)[0]


def _dir(repo: Repository, name: bytes, children: list[Node], mode: int = 0o755) -> Node:
    tree_id = _save_tree(repo, children)
    return Node(name=name, type="dir", mode=MODE_DIR | mode, mtime=T, atime=T, ctime=T,
                subtree=tree_id)


def _snapshot(repo: Repository, nodes: list[Node]) -> Snapshot:
    tree_id = _save_tree(repo, nodes)
    sn = Snapshot(time=T, tree=tree_id, paths=["/x"])
    repo.save_snapshot(sn)
    return sn


def test_a_blob_missing_from_the_index_loses_only_its_file(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    ghost = _file(repo, b"ghost", b"x")
    ghost.content = [bytes(32)]  # never stored
    sn = _snapshot(repo, [_file(repo, b"a", b"A"), ghost, _file(repo, b"z", b"Z")])
    target = tmp_path / "t"
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(target), salvage=True))
    assert sorted(os.listdir(target)) == ["a", "z"]
    assert stats.errors == [("/ghost", f"its data is lost: data blob {'00' * 32} is not "
                                       "in the index")]


def test_unsafe_names_are_skipped_readably_and_the_rest_restored(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = Node(name=b"link", type="symlink", mode=MODE_SYMLINK | 0o777, mtime=T, atime=T,
                ctime=T, linktarget=os.fsencode(outside))
    nodes = [
        _file(repo, b"../escaped", b"evil"),
        _file(repo, b"/abs-airflow-backup-test", b"evil"),
        _dir(repo, b"d", [_file(repo, b"a/b", b"evil"), _file(repo, b"ok", b"fine"),
                          _file(repo, b"nul\0\xff\n", b"evil")]),
        link,
        _dir(repo, b"link", [_file(repo, b"payload", b"evil")]),  # after a symlink of that name
        _file(repo, b"safe", b"safe data"),
    ]
    sn = _snapshot(repo, nodes)
    target = tmp_path / "target"
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(target), salvage=True))
    assert (target / "safe").read_bytes() == b"safe data"
    assert (target / "d" / "ok").read_bytes() == b"fine"
    assert (target / "link").is_symlink()
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escaped").exists()
    assert not os.path.lexists("/abs-airflow-backup-test")
    assert sorted(os.listdir(target)) == ["d", "link", "safe"]
    assert sorted(os.listdir(target / "d")) == ["ok"]
    shown = dict(stats.errors)
    assert set(shown) == {"/../escaped", "//abs-airflow-backup-test", "/d/a/b",
                          "/d/nul\\x00\\xff\\x0a", "/link"}
    assert "contains '/'" in shown["/../escaped"]
    assert "absolute path" in shown["//abs-airflow-backup-test"]
    assert "NUL" in shown["/d/nul\\x00\\xff\\x0a"]
    assert "second entry" in shown["/link"]
    _assert_readable(stats.errors)
    restorer = Restorer(repo)
    with pytest.raises(UnsafePath, match="5 item"):
        restorer.restore(sn, RestoreOptions(target=str(tmp_path / "strict")))
    assert (tmp_path / "strict" / "safe").read_bytes() == b"safe data"


@pytest.mark.parametrize(("raw", "text"), [
    (b"plain.txt", "plain.txt"), ("żółw".encode(), "żółw"), (b"\xff\xfe", "\\xff\\xfe"),
    (b"a\nb\tc", "a\\x0ab\\x09c"), (b"back\\slash", "back\\\\slash"), (b"\x1b[31m", "\\x1b[31m"),
    ("\u202e".encode(), "\\u202e"),
])
def test_show_name_is_printable_and_unambiguous(raw: bytes, text: str) -> None:
    assert show_name(raw) == text


def test_verify_reads_files_back_and_reports_a_difference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    sn = _snapshot(repo, [_file(repo, b"good", b"G" * 5000), _file(repo, b"bad", b"B" * 5000),
                          _file(repo, b"empty", b"")])
    original = Restorer._file_done

    def tamper(self: Restorer, job: FileJob, fd: int | None = None) -> None:
        if job.dest.endswith(b"/bad"):  # as if the disk had kept something else
            with open(job.dest, "r+b") as f:
                f.seek(4000)
                f.write(b"X")
        original(self, job, fd)

    monkeypatch.setattr(Restorer, "_file_done", tamper)
    target = tmp_path / "t"
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(target), salvage=True,
                                                      verify=True))
    assert stats.verified == 2 and stats.files == 2
    assert [p for p, _ in stats.errors] == ["/bad"]
    assert "verification failed" in stats.errors[0][1] and "bytes 0-4999" in stats.errors[0][1]
    assert not (target / "bad").exists()
    assert (target / "good").read_bytes() == b"G" * 5000
    with pytest.raises(RestoreError):
        Restorer(repo).restore(sn, RestoreOptions(target=str(tmp_path / "t2"), verify=True))


def test_a_tree_2000_levels_deep_restores(tmp_path: Path) -> None:
    """The archiver cannot back such a tree up (its walk recurses); the trees are built with
    the repository API, the deepest first."""
    repo = Repository.init(MemoryStorage(), "pw")
    depth = 2000
    node = _file(repo, b"f", b"at the bottom")
    for _ in range(depth):
        node = _dir(repo, b"d", [node], mode=0o750)
    sn = _snapshot(repo, [node])
    # Paths of 4,000 bytes: a short target keeps them below PATH_MAX.
    short = tempfile.mkdtemp(prefix="deep", dir="/tmp")
    try:
        stats = Restorer(repo).restore(sn, RestoreOptions(target=short, salvage=True))
        assert stats.errors == []
        assert (stats.dirs, stats.files) == (depth, 1)
        fd = os.open(short, os.O_RDONLY)
        try:
            for _ in range(depth):
                nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
                assert stat.S_IMODE(os.fstat(nxt).st_mode) == 0o750
                os.close(fd)
                fd = nxt
            leaf = os.open("f", os.O_RDONLY, dir_fd=fd)
            assert os.read(leaf, 100) == b"at the bottom"
            os.close(leaf)
        finally:
            os.close(fd)
        listed = list(walk_tree(repo, sn.tree))
        assert len(listed) == depth + 1
    finally:
        _remove_deep(short, depth)


def _remove_deep(root: str, depth: int) -> None:
    """Remove what the deep restore made, deepest first (shutil.rmtree recurses)."""
    for level in range(depth, -1, -1):
        path = root + "/d" * level
        if os.path.isdir(path):
            for name in os.listdir(path):
                if name != "d":
                    os.unlink(os.path.join(path, name))
            os.rmdir(path)


def test_a_sub_path_naming_an_unsafe_node_is_refused(tmp_path: Path) -> None:
    repo = Repository.init(MemoryStorage(), "pw")
    sn = _snapshot(repo, [_dir(repo, b"..", [_file(repo, b"x", b"evil")])])
    target = tmp_path / "a" / "target"
    stats = Restorer(repo).restore(sn, RestoreOptions(target=str(target), subpath="/..",
                                                      salvage=True))
    assert stats.errors == [("/..", 'refusing unsafe entry: ".." is not a name')]
    assert list((tmp_path / "a").iterdir()) == [target]
    assert list(target.iterdir()) == []

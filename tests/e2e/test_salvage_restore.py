"""``restore`` of a damaged repository saves everything it can (restic's behaviour): a lost
pack, a corrupt data blob or an unreadable tree costs only the files that need it, unsafe
names in a snapshot are skipped, each skipped item is named on stderr, no partial file is
left, and the exit status is 3."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot
from airflow_backup.repository.tree import MODE_DIR, Node
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, object_path
from airflow_backup.storage.local import LocalStorage
from support.cli import ok, run_cli
from support.salvage import file_nodes, flip_byte, packs_of, write_mixed_tree

pytestmark = [pytest.mark.slow]

PW = "secret-pw"
DIR_MTIME = 1_500_000_000
T = "2024-01-01T00:00:00Z"
_BYTES_REPR = re.compile(r"""(^|[\s(\[{,:=])b['"]""")


@dataclass(frozen=True)
class Backup:
    src: Path
    repo: Path


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """Four 12 MB random files and 30 small ones in four directories (0750, a fixed mtime),
    backed up once through the CLI; each test damages its own copy of the repository."""
    base = tmp_path_factory.mktemp("salvage")
    src = base / "src"
    write_mixed_tree(src, 20240101)
    for d in ("small/sub", "small/other", "small", "big", ""):
        (src / d).chmod(0o750)
        os.utime(src / d, (DIR_MTIME, DIR_MTIME))
    repo = base / "repo"
    ok(run_cli(repo, "init"))
    ok(run_cli(repo, "backup", str(src)))
    return Backup(src, repo)


def _copy(backup: Backup, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(backup.repo, repo)
    return repo


def _open(repo: Path) -> tuple[Repository, Snapshot]:
    r = Repository.open(LocalStorage(str(repo)), PW)
    r.load_index()
    return r, r.list_snapshots()[-1]


def _check(target: Path, files: dict[str, Node], lost: set[str]) -> None:
    """Every file not in ``lost`` is byte-exact; no lost file (not even a part) is left."""
    for path in files:
        restored = target / path.lstrip("/")
        if path in lost:
            assert not restored.exists(), f"{path}: a lost file was left behind"
        else:
            assert restored.read_bytes() == Path(path).read_bytes(), path


def _stderr_items(stderr: bytes) -> dict[str, str]:
    """The 'PATH: reason' lines of a restore's stderr (its last line is the count)."""
    text = stderr.decode()
    assert "Traceback" not in text and not _BYTES_REPR.search(text), text
    lines = text.strip().splitlines()
    assert re.fullmatch(r"Warning: \d+ item\(s\) could not be restored", lines[-1]), lines
    return dict(line.split(": ", 1) for line in lines[:-1])


def test_a_missing_pack_costs_only_the_files_that_need_it(backup: Backup,
                                                         tmp_path: Path) -> None:
    repo = _copy(backup, tmp_path)
    r, sn = _open(repo)
    files = file_nodes(r, sn)
    victim = sorted(packs_of(r, files[str(backup.src / "big" / "f1.bin")]))[0].hex()
    lost = {p for p, n in files.items() if bytes.fromhex(victim) in packs_of(r, n)}
    assert 0 < len(lost) < len(files)
    (repo / object_path(Handle(FileType.DATA, victim))).unlink()

    target = tmp_path / "out"
    proc = run_cli(repo, "restore", "latest", "--target", str(target))
    assert proc.returncode == 3, proc.stderr
    _check(target, files, lost)
    items = _stderr_items(proc.stderr)
    assert set(items) == lost
    assert all(f"pack {victim} is missing" in reason for reason in items.values())
    assert f"restored {len(files) - len(lost)} files" in proc.stdout.decode()
    # Every directory has its mode and time back, also those holding lost files.
    for d in ("big", "small", "small/sub", "small/other", ""):
        got = (target / str(backup.src).lstrip("/") / d).stat()
        assert (stat.S_IMODE(got.st_mode), got.st_mtime) == (0o750, DIR_MTIME), d

    # The same restore with --json: restic's error lines on stderr, the count in the summary.
    target2 = tmp_path / "out-json"
    proc = run_cli(repo, "--json", "restore", "latest", "--target", str(target2), "--verify")
    assert proc.returncode == 3, proc.stderr
    _check(target2, files, lost)
    errors = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert {e["item"] for e in errors} == lost
    assert all(e["message_type"] == "error" and e["during"] == "restore"
               and victim in e["error"]["message"] for e in errors)
    summary = json.loads(proc.stdout.decode().splitlines()[-1])
    assert summary["total_errors"] == len(lost)
    # restic's files_restored counts directories too (files/dirs); files_verified files only
    assert summary["files_verified"] == len(files) - len(lost)
    assert summary["files_restored"] == summary["files_verified"] + summary["dirs_restored"]


def test_a_corrupt_tree_costs_only_its_directory(backup: Backup, tmp_path: Path) -> None:
    """One byte flipped inside the stored tree of small/sub (found through the index):
    every other directory is restored."""
    repo = _copy(backup, tmp_path)
    r, sn = _open(repo)
    files = file_nodes(r, sn)
    sub = str(backup.src / "small" / "sub")
    node = next(n for p, n in walk_tree(r, sn.tree) if os.fsdecode(p) == sub)
    assert node.subtree is not None
    entry = r.index.lookup(BlobType.TREE, node.subtree)
    assert entry is not None
    flip_byte(repo, entry.pack_id, entry.blob.offset + entry.blob.length // 2)

    target = tmp_path / "out"
    proc = run_cli(repo, "restore", "latest", "--target", str(target))
    assert proc.returncode == 3, proc.stderr
    lost = {p for p in files if p.startswith(sub + "/")}
    assert len(lost) == 10
    _check(target, files, lost)
    items = _stderr_items(proc.stderr)
    assert list(items) == [sub]
    assert node.subtree.hex()[:16] in items[sub]
    restored_sub = target / sub.lstrip("/")
    assert restored_sub.is_dir() and list(restored_sub.iterdir()) == []
    assert stat.S_IMODE(restored_sub.stat().st_mode) == 0o750


def test_a_flipped_byte_in_a_data_blob_costs_only_its_file(backup: Backup,
                                                           tmp_path: Path) -> None:
    repo = _copy(backup, tmp_path)
    r, sn = _open(repo)
    files = file_nodes(r, sn)
    victim = str(backup.src / "small" / "s03.txt")
    entry = r.index.lookup(BlobType.DATA, (files[victim].content or [])[0])
    assert entry is not None
    assert sum(entry.pack_id in packs_of(r, n) for n in files.values()) > 1
    flip_byte(repo, entry.pack_id, entry.blob.offset + 40)

    target = tmp_path / "out"
    proc = run_cli(repo, "restore", "latest", "--target", str(target))
    assert proc.returncode == 3, proc.stderr
    _check(target, files, {victim})
    items = _stderr_items(proc.stderr)
    assert list(items) == [victim]
    assert "damaged" in items[victim]


def test_unsafe_names_are_skipped_and_named_readably(backup: Backup, tmp_path: Path) -> None:
    repo = _copy(backup, tmp_path)
    r = Repository.open(LocalStorage(str(repo)), PW)
    r.load_index()

    def file(name: bytes, data: bytes) -> Node:
        blob_id, _ = r.save_blob(BlobType.DATA, data)
        return Node(name=name, type="file", mode=0o644, mtime=T, atime=T, ctime=T,
                    size=len(data), content=[blob_id])

    inner, _ = r.save_tree([file(b"../../escaped-inner", b"evil"), file(b"fine", b"ok")])
    absolute = f"/airflow-backup-e2e-abs-{os.getpid()}".encode()
    nodes = [file(b"../escaped", b"evil"), file(absolute, b"evil"), file(b"a/b", b"evil"),
             Node(name=b"dir", type="dir", mode=MODE_DIR | 0o755, mtime=T, atime=T, ctime=T,
                  subtree=inner),
             file(b"safe.txt", b"safe")]
    tree, _ = r.save_tree(nodes)  # save_tree wants them sorted; they are
    sn = Snapshot(time=T, tree=tree, paths=["/hostile"])
    r.save_snapshot(sn)

    box = tmp_path / "box"
    target = box / "deep" / "target"
    target.mkdir(parents=True)
    proc = run_cli(repo, "restore", sn.id[:8], "--target", str(target))
    assert proc.returncode == 3, proc.stderr
    assert (target / "safe.txt").read_bytes() == b"safe"
    assert (target / "dir" / "fine").read_bytes() == b"ok"
    assert sorted(p.relative_to(box).as_posix() for p in box.rglob("*")) == [
        "deep", "deep/target", "deep/target/dir", "deep/target/dir/fine",
        "deep/target/safe.txt"]
    assert not os.path.lexists(absolute)
    items = _stderr_items(proc.stderr)
    assert set(items) == {"/../escaped", "/" + absolute.decode(), "/a/b",
                          "/dir/../../escaped-inner"}
    assert "contains '/'" in items["/a/b"] and "absolute path" in items["/" + absolute.decode()]

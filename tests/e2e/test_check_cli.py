"""``check`` finds each kind of damage, names what it breaks, and exits non-zero."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from airflow_backup.repository.packfiles import write_index
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, object_path
from airflow_backup.storage.local import LocalStorage
from support.cli import ok as _ok
from support.cli import run_cli

PW = "secret-pw"




@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A repository with two snapshots of a small tree; returns (repo, source dir)."""
    root = tmp_path_factory.mktemp("check")
    src = root / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_bytes(b"alpha " * 1000)
    (src / "big.bin").write_bytes(random.Random(1).randbytes(300_000))
    repo = root / "repo"
    _ok(run_cli(repo, "init"))
    _ok(run_cli(repo, "backup", str(src), "--tag", "first"))
    (src / "docs" / "b.txt").write_bytes(b"beta " * 1000)
    _ok(run_cli(repo, "backup", str(src), "--tag", "second"))
    return repo, src


@pytest.fixture
def repo(base_repo: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(base_repo[0], copy)
    return copy


def _open(path: Path) -> Repository:
    r = Repository.open(LocalStorage(path), PW)
    r.load_index()
    return r


def _blob_of(repo: Repository, name: bytes) -> tuple[bytes, str]:
    """Return (data blob id, pack id) of the file called ``name`` in the latest snapshot."""
    sn = repo.list_snapshots()[-1]
    node = next(n for p, n in walk_tree(repo, sn.tree) if p.endswith(b"/" + name))
    blob_id = (node.content or [])[0]
    entry = repo.index.lookup(BlobType.DATA, blob_id)
    assert entry is not None
    return blob_id, entry.pack_id.hex()


def _flip(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def _check(repo: Path, *args: str) -> tuple[int, str]:
    proc = run_cli(repo, "check", *args)
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


def test_clean_repository_passes(repo: Path) -> None:
    code, text = _check(repo, "--read-data")
    assert code == 0 and "no errors were found" in text


def test_flipped_byte_in_a_data_pack(repo: Path, base_repo: tuple[Path, Path]) -> None:
    r = _open(repo)
    blob_id, pack = _blob_of(r, b"big.bin")
    entry = r.index.lookup(BlobType.DATA, blob_id)
    assert entry is not None
    _flip(repo / object_path(Handle(FileType.DATA, pack)), entry.blob.offset + 100)
    code, text = _check(repo)  # structure alone cannot see it, as with restic
    assert code == 0
    code, text = _check(repo, "--read-data")
    assert code == 1
    assert f"pack {pack}: content does not match its id" in text
    assert f"data blob {blob_id.hex()} is damaged" in text
    big = str(base_repo[1] / "big.bin")
    snaps = [s.short_id for s in r.list_snapshots()]
    for short in snaps:  # both snapshots contain big.bin
        assert f"snapshot {short}: {big}" in text
    assert "Fatal: repository contains" in text


def test_missing_pack(repo: Path, base_repo: tuple[Path, Path]) -> None:
    r = _open(repo)
    _, pack = _blob_of(r, b"a.txt")
    (repo / object_path(Handle(FileType.DATA, pack))).unlink()
    code, text = _check(repo)
    assert code == 1
    assert f"pack {pack}: missing" in text
    assert f"pack {pack} (missing) breaks:" in text
    assert str(base_repo[1] / "docs" / "a.txt") in text


def test_index_entry_pointing_nowhere(repo: Path, base_repo: tuple[Path, Path]) -> None:
    r = _open(repo)
    blob_id, pack = _blob_of(r, b"b.txt")
    files = r.load_index_files()
    for index_id, packs in files:
        for blobs in packs.values():
            for i, b in enumerate(blobs):
                if b.id == blob_id:
                    blobs[i] = type(b)(b.type, b.id, b.offset + 7, b.length,
                                       b.uncompressed_length)
        write_index(r, packs)
        (repo / "index" / index_id).unlink()
    code, text = _check(repo)
    assert code == 1
    assert f"pack {pack}: the index places data blob {blob_id.hex()}" in text
    assert "pack header does not list it there" in text
    assert str(base_repo[1] / "docs" / "b.txt") in text
    second = r.list_snapshots()[-1].short_id
    assert f"snapshot {second}: {base_repo[1] / 'docs' / 'b.txt'}" in text


def test_index_entry_for_a_pack_that_does_not_exist(repo: Path) -> None:
    r = _open(repo)
    ghost = "ab" * 32
    packs = {bytes.fromhex(ghost): [type(e.blob)(BlobType.DATA, b"\7" * 32, 0, 64)
                                    for e in list(r.index.entries())[:1]]}
    write_index(r, packs)
    code, text = _check(repo, "--json")
    assert code == 1
    report = json.loads(text.splitlines()[0])
    assert report["damaged_packs"] == {ghost: "missing"}
    assert any(ghost in e and "missing" in e for e in report["errors"])


def test_damaged_snapshot_file(repo: Path) -> None:
    name = sorted(os.listdir(repo / "snapshots"))[0]
    _flip(repo / "snapshots" / name, 40)
    code, text = _check(repo)
    assert code == 1
    assert f"snapshot file {name}: damaged" in text
    assert f"snapshot file {name} is damaged" in text and "the snapshot is lost" in text


def test_read_data_subsets_cover_every_pack_once(repo: Path) -> None:
    total = 0
    packs = None
    for n in (1, 2):
        proc = _ok(run_cli(repo, "--json", "check", "--read-data-subset", f"{n}/2"))
        report = json.loads(proc.stdout)  # type: ignore[attr-defined]
        total += report["packs_read"]
        packs = report["packs"]
    assert total == packs
    proc = _ok(run_cli(repo, "--json", "check", "--read-data-subset", "50%"))
    assert json.loads(proc.stdout)["packs_read"] >= 1  # type: ignore[attr-defined]
    bad = run_cli(repo, "check", "--read-data-subset", "4/3")
    assert bad.returncode == 1 and b"n <= t" in bad.stderr


def test_several_damaged_packs_are_reported_in_pack_order(repo: Path) -> None:
    """Packs are read by parallel workers; the findings still come in pack order, the same
    from run to run, whatever the damage (a flipped byte, a cut or a grown file)."""
    packs = sorted((repo / "data").glob("*/*"))
    assert len(packs) >= 2
    for i, path in enumerate(packs):
        os.chmod(path, 0o644)
        data = path.read_bytes()
        if i % 3 == 0:
            _flip(path, len(data) // 2)
        elif i % 3 == 1:
            path.write_bytes(data[:-10])
        else:
            path.write_bytes(data + b"\0")
    code, first = _check(repo, "--read-data")
    assert code == 1
    named = [line.split("pack ", 1)[1].split(":")[0] for line in first.splitlines()
             if line.endswith("content does not match its id (the file is damaged)")]
    assert named == sorted(p.name for p in packs)
    code, second = _check(repo, "--read-data")
    assert code == 1 and second == first

"""``repair index`` and ``repair snapshots``: after losing or damaging packs, the repository
checks clean again, and the repaired snapshots record what was lost."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.restorer.walk import walk_tree
from airflow_backup.storage.base import FileType, Handle, object_path
from airflow_backup.storage.local import LocalStorage
from support.cli import ok as _ok
from support.cli import run_cli
from support.tools import run_restic

PW = "secret-pw"




def _pack_of(repo_path: Path, name: bytes) -> tuple[str, int]:
    r = Repository.open(LocalStorage(repo_path), PW)
    r.load_index()
    sn = r.list_snapshots()[-1]
    node = next(n for p, n in walk_tree(r, sn.tree) if p.endswith(b"/" + name))
    entry = r.index.lookup(BlobType.DATA, (node.content or [])[0])
    assert entry is not None
    return entry.pack_id.hex(), entry.blob.offset


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"keep me " * 500)
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    _ok(run_cli(repo, "backup", str(src)))
    (src / "lost.bin").write_bytes(random.Random(3).randbytes(200_000))
    (src / "buddy.txt").write_bytes(b"stored in the same pack as lost.bin " * 100)
    _ok(run_cli(repo, "backup", str(src)))
    return repo, src


@pytest.mark.slow
@pytest.mark.restic
def test_lost_pack_repair_index_then_snapshots(setup: tuple[Path, Path], tmp_path: Path,
                                               restic_bin: str) -> None:
    repo, src = setup
    pack, _ = _pack_of(repo, b"lost.bin")
    (repo / object_path(Handle(FileType.DATA, pack))).unlink()
    assert run_cli(repo, "check").returncode == 1

    _ok(run_cli(repo, "repair", "index"))
    after_index = run_cli(repo, "check")
    assert after_index.returncode == 1
    assert b"not found in index" in after_index.stderr

    dry = _ok(run_cli(repo, "repair", "snapshots", "--dry-run"))
    assert b"lost.bin: 1 of 1 data blobs missing" in dry.stdout  # type: ignore[attr-defined]
    assert run_cli(repo, "check").returncode == 1  # a dry run changed nothing

    out = _ok(run_cli(repo, "--json", "repair", "snapshots", "--forget"))
    results = json.loads(out.stdout)  # type: ignore[attr-defined]
    assert [r["status"] for r in results] == ["repaired"]
    what = "1 of 1 data blobs missing; file truncated to 0 bytes"
    assert results[0]["lost"] == [{"path": f"{src}/buddy.txt", "what": what},
                                  {"path": f"{src}/lost.bin", "what": what}]
    _ok(run_cli(repo, "check", "--read-data"))
    run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin)

    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)  # type: ignore[attr-defined]
    repaired = next(s for s in snaps if s["id"] == results[0]["new_id"])
    assert repaired["original"] == results[0]["snapshot"]
    assert repaired["airflow_backup"]["repaired"]["lost"][1]["path"] == f"{src}/lost.bin"
    assert "repaired" not in repaired.get("tags", [])  # --forget: no tag, as restic
    target = tmp_path / "restored"
    _ok(run_cli(repo, "restore", repaired["id"], "--target", str(target)))
    restored = target / str(src).lstrip("/")
    assert (restored / "keep.txt").read_bytes() == (src / "keep.txt").read_bytes()
    assert (restored / "buddy.txt").read_bytes() == b""
    assert (restored / "lost.bin").read_bytes() == b""


@pytest.mark.slow
def test_read_all_packs_salvages_intact_blobs(setup: tuple[Path, Path], tmp_path: Path) -> None:
    repo, src = setup
    (src / "other.txt").write_bytes(b"other " * 4000)
    _ok(run_cli(repo, "backup", str(src), "--tag", "third"))
    pack, offset = _pack_of(repo, b"lost.bin")
    path = repo / object_path(Handle(FileType.DATA, pack))
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset + 50] ^= 1
    path.write_bytes(bytes(data))
    assert run_cli(repo, "check", "--read-data").returncode == 1

    out = json.loads(_ok(run_cli(repo, "--json", "repair", "index",
                                 "--read-all-packs")).stdout)  # type: ignore[attr-defined]
    assert pack in out["unreadable_packs"]
    assert out["lost_blobs"] == 1 and out["salvaged_blobs"] == 1  # buddy.txt was copied
    _ok(run_cli(repo, "repair", "snapshots"))  # keeps the originals, tags the copies
    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)  # type: ignore[attr-defined]
    originals = [s for s in snaps if "repaired" not in s.get("tags", [])]
    copies = [s for s in snaps if "repaired" in s.get("tags", [])]
    assert len(copies) == 2 and len(originals) == 3
    _ok(run_cli(repo, "forget", *[s["id"] for s in originals[1:]], "--prune"))
    _ok(run_cli(repo, "check", "--read-data"))  # the damaged pack was pruned
    assert not path.exists()
    target = tmp_path / "t"
    newest = max(copies, key=lambda s: s["time"])
    _ok(run_cli(repo, "restore", newest["id"], "--target", str(target)))
    restored = target / str(src).lstrip("/")
    assert (restored / "other.txt").read_bytes() == (src / "other.txt").read_bytes()
    assert (restored / "keep.txt").read_bytes() == (src / "keep.txt").read_bytes()
    assert (restored / "buddy.txt").read_bytes() == (src / "buddy.txt").read_bytes()
    assert (restored / "lost.bin").read_bytes() == b""

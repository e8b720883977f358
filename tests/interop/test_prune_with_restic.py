"""Prune against the real restic: after our ``forget --prune`` restic's ``check --read-data`` is
clean, every kept snapshot restores exactly, and the repository shrank; and killing our prune
with SIGKILL after any one of its storage writes leaves a repository restic accepts, whose
kept snapshots restore, and which a second prune finishes cleaning."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.local import LocalStorage
from support.cli import ok as _ok
from support.cli import run_cli
from support.tools import run_restic
from support.trees import compare_trees, restored_path
from support.versions import build_version

pytestmark = [pytest.mark.restic]

PW = "secret-pw"
T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)




def _pack_bytes(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / "data").rglob("*") if f.is_file())


def _make_history(root: Path, versions: int) -> tuple[Path, Path, dict[str, int]]:
    """Back up ``versions`` versions of a tree, a day apart; return (repo, source,
    snapshot id -> version)."""
    src, repo_dir = root / "src", root / "repo"
    repo = Repository.init(LocalStorage(repo_dir), PW, kdf=KdfParams(1024, 8, 1))
    ids = {}
    for v in range(versions):
        build_version(src, v)
        opts = BackupOptions(paths=[str(src)], tags=["lifecycle"], hostname="host",
                             time=T0 + timedelta(days=v))
        ids[Archiver(repo).backup(opts).snapshot.id] = v
    return repo_dir, src, ids


def _kept(repo: Path) -> list[str]:
    return [s["id"] for s in json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)]  # type: ignore[attr-defined]


def _restores_exactly(repo: Path, src: Path, ids: dict[str, int], workdir: Path,
                      restic_bin: str) -> None:
    for sid in _kept(repo):
        expected = build_version(workdir / f"expected-{ids[sid]}", ids[sid])
        target = workdir / f"restic-{sid[:8]}"
        run_restic(repo, "restore", sid, "--target", str(target), password=PW,
                   restic_bin=restic_bin)
        assert compare_trees(expected, restored_path(target, src), check_root=False) == []
        shutil.rmtree(target)


def test_forget_prune_then_restic_check_read_data_and_exact_restores(
    tmp_path: Path, restic_bin: str
) -> None:
    repo, src, ids = _make_history(tmp_path, 6)
    before = _pack_bytes(repo)
    out = _ok(run_cli(repo, "--json", "forget", "--keep-last", "3", "--prune"))
    lines = out.stdout.decode().splitlines()  # type: ignore[attr-defined]
    groups, summary = json.loads(lines[0]), json.loads(lines[-1])
    assert len(groups[0]["keep"]) == 3 and len(groups[0]["remove"]) == 3
    assert summary["message_type"] == "summary" and summary["packs_to_repack"] > 0
    after = _pack_bytes(repo)
    print(f"\npack bytes before forget --prune: {before}, after: {after} "
          f"({100 * (before - after) / before:.1f}% smaller)")
    assert after < before - 150_000  # v0.bin (random, incompressible) is gone

    check = run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin)
    assert b"no errors were found" in check.stdout
    assert b"additional files" not in check.stdout + check.stderr  # no orphans left
    _restores_exactly(repo, src, ids, tmp_path, restic_bin)
    ours = tmp_path / "ours"
    newest = max(_kept(repo), key=ids.__getitem__)
    _ok(run_cli(repo, "restore", newest, "--target", str(ours)))
    assert compare_trees(build_version(tmp_path / "exp-ours", ids[newest]),
                         restored_path(ours, src), check_root=False) == []
    again = json.loads(_ok(run_cli(repo, "--json", "prune")).stdout)  # type: ignore[attr-defined]
    assert again["bytes_freed"] == 0


@pytest.mark.slow
def test_prune_killed_after_each_storage_write(tmp_path: Path, restic_bin: str) -> None:
    base, src, ids = _make_history(tmp_path / "base", 5)
    _ok(run_cli(base, "forget", "--keep-last", "2"))  # prune is left to the runs below

    # A complete run, journaled, to learn how many writes (saves and removes) prune does.
    full = tmp_path / "full"
    shutil.copytree(base, full)
    journal = tmp_path / "full.log"
    _ok(run_cli(full, "prune", env={"AIRFLOW_BACKUP_FAULTS": f"journal={journal}"}))
    ops = journal.read_text().splitlines()
    kinds = [op.split()[0] + " " + op.split()[1].split("/")[0] for op in ops]
    assert kinds[0] == "save locks" and kinds[-1] == "remove locks"
    body = [k for k in kinds if "locks" not in k]
    firsts = [k for i, k in enumerate(body) if k not in body[:i]]
    assert firsts == ["save data", "save index", "remove index", "remove data"], kinds
    total = len(ops)
    assert total >= 8

    def crash_at(k: int) -> str | None:
        work = tmp_path / f"k{k}"
        repo = work / "repo"
        shutil.copytree(base, repo)
        log = work / "ops.log"
        proc = run_cli(repo, "prune",
                       env={"AIRFLOW_BACKUP_FAULTS": f"crash_at={k},journal={log}"})
        if proc.returncode != -9 or len(log.read_text().splitlines()) != k:
            return f"k={k}: expected SIGKILL after write {k}, got {proc.returncode}"
        run_restic(repo, "unlock", password=PW, restic_bin=restic_bin)  # the dead PID's lock
        check = run_restic(repo, "check", password=PW, restic_bin=restic_bin, check=False)
        if check.returncode != 0:
            return f"k={k}: restic check failed:\n{check.stdout.decode()}{check.stderr.decode()}"
        _restores_exactly(repo, src, ids, work, restic_bin)
        second = run_cli(repo, "prune")
        if second.returncode != 0:
            return f"k={k}: second prune failed: {second.stderr.decode()}"
        final = run_restic(repo, "check", "--read-data", password=PW, restic_bin=restic_bin,
                           check=False)
        if final.returncode != 0 or b"additional files" in final.stdout:
            return f"k={k}: after the second prune: {final.stdout.decode()}"
        shutil.rmtree(work)
        return None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(crash_at, range(1, total + 1)) if f]
    assert failures == []
    print(f"\nprune killed after each of its {total} storage writes: all recovered")

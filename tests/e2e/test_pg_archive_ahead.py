"""``pg archive-wal`` archiving ahead: one call stores the WAL files the server has marked
ready, and the server's next calls are answered from receipts — only for the exact bytes
stored, and never losing a file when the archiver is killed mid-batch.

No server needed: a ``pg_wal`` directory with ``archive_status/NAME.ready`` files is what
PostgreSQL leaves for its archiver. (The load test with a real server is bench/pitr_bench.py;
tests/e2e/test_pg_pitr.py archives from real clusters, ahead by default.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import FAST_KDF, ok, one_line_error, repo, run_cli

__all__ = ["repo"]

PASSWORD = "secret-pw"


def _ready(wal: Path, first: int, count: int) -> list[Path]:
    """Write ``count`` 16 MiB segments from number ``first`` on, each marked ready."""
    (wal / "archive_status").mkdir(parents=True, exist_ok=True)
    out = []
    for n in range(first, first + count):
        path = wal / f"0000000100000000000000{n:02X}"
        path.write_bytes(bytes([n]) * 4096 + os.urandom(16 * 1024 * 1024 - 4096))
        (wal / "archive_status" / f"{path.name}.ready").touch()
        out.append(path)
    return out


def _done(seg: Path) -> None:
    """What PostgreSQL does after archive_command exits 0: ready becomes done."""
    status = seg.parent / "archive_status"
    (status / f"{seg.name}.ready").rename(status / f"{seg.name}.done")


def _command(repo_dir: Path, cache: Path, *args: str, password: str | None = PASSWORD,
             ) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m airflow_backup`` (the ``airflow-backup`` entry point, receipt fast
    path included) as archive_command runs it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, AIRFLOW_BACKUP_CACHE_DIR=str(cache))
    if password is not None:
        env["AIRFLOW_BACKUP_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "airflow_backup", "-r", str(repo_dir), *args],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=600, check=False)


def _restic_check(repo_dir: Path) -> None:
    restic = shutil.which("restic")
    assert restic is not None, "restic not found (run 'make tools')"
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    for args in (["unlock"], ["check", "--read-data"]):
        proc = subprocess.run([restic, "-r", str(repo_dir), "--no-cache", *args], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])


def _restored_equal(repo_dir: Path, cache: Path, segs: list[Path], tmp: Path) -> None:
    for seg in segs:
        got = tmp / "RECOVERYXLOG"
        ok(run_cli(repo_dir, "pg", "restore-wal", seg.name, got,
                   env={"AIRFLOW_BACKUP_CACHE_DIR": str(cache)}))
        assert got.read_bytes() == seg.read_bytes(), seg.name


def _wal_snapshots(repo_dir: Path) -> list[str]:
    snaps = json.loads(ok(run_cli(repo_dir, "snapshots", "--tag", "wal", "--json")).stdout)
    return sorted(str(sn["tags"][-1]) for sn in snaps)


def test_one_call_stores_the_ready_files_and_later_calls_use_receipts(
        repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    segs = _ready(tmp_path / "pg_wal", 0x10, 5)
    first = json.loads(ok(_command(repo, cache, "--json", "pg", "archive-wal", "--ahead", "3",
                                   str(segs[0]))).stdout)
    assert first["archived_ahead"] is False and first["already_archived"] is False
    assert first["ahead"] == [s.name for s in segs[1:4]]
    _done(segs[0])
    for seg in segs[1:4]:
        # No password at all: the answer comes from the receipt, the repository is not
        # opened (it could not be without the password).
        got = json.loads(ok(_command(repo, cache, "--json", "pg", "archive-wal", str(seg),
                                     password=None)).stdout)
        assert (got["name"], got["archived_ahead"]) == (seg.name, True)
        _done(seg)
    # The fifth was beyond --ahead 3: stored now, by a normal call.
    last = ok(_command(repo, cache, "pg", "archive-wal", str(segs[4])))
    assert b"archived as snapshot" in last.stdout
    assert _wal_snapshots(repo) == [f"segment={s.name}" for s in segs]
    assert not list((cache / "pitr-spool").rglob("*.receipt"))  # every receipt used once
    _restored_equal(repo, cache, segs, tmp_path)
    _restic_check(repo)


def test_a_receipt_never_vouches_for_other_bytes(repo: Path, tmp_path: Path) -> None:
    """If the file under a receipt's name changed, the call goes to the repository and
    gets the archive contract's answer: a different content is refused."""
    cache = tmp_path / "cache"
    segs = _ready(tmp_path / "pg_wal", 0x20, 2)
    ok(_command(repo, cache, "pg", "archive-wal", str(segs[0])))
    with open(segs[1], "r+b") as f:
        f.seek(8 * 1024 * 1024)
        f.write(b"bit rot")
    line = one_line_error(_command(repo, cache, "pg", "archive-wal", str(segs[1])), 1)
    assert "different content" in line, line
    # --ahead 0: only the file asked for.
    more = _ready(tmp_path / "pg_wal2", 0x30, 3)
    out = json.loads(ok(_command(repo, cache, "--json", "pg", "archive-wal", "--ahead", "0",
                                 str(more[0]))).stdout)
    assert out["ahead"] == []
    assert f"segment={more[1].name}" not in _wal_snapshots(repo)


@pytest.mark.slow
def test_killing_the_archiver_mid_batch_loses_nothing(repo: Path, tmp_path: Path) -> None:
    """SIGKILL ``archive-wal`` while it stores ready files ahead (after 1, 2 and 3 of its
    snapshots are written), then let PostgreSQL's retries run in order: every file ends up
    archived exactly once with its exact bytes, and restic finds the repository sound."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_BACKUP_", "RESTIC_"))}
    env.update(AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF, AIRFLOW_BACKUP_PASSWORD=PASSWORD,
               AIRFLOW_BACKUP_CACHE_DIR=str(cache))
    all_segs: list[Path] = []
    report = []
    for round_, after in enumerate((1, 2, 3)):
        wal = tmp_path / f"pg_wal{round_}"
        segs = _ready(wal, 0x40 + 8 * round_, 6)
        all_segs += segs
        before = {p.name for p in (repo / "snapshots").iterdir()}
        proc = subprocess.Popen([sys.executable, "-m", "airflow_backup", "-r", str(repo), "pg",
                                 "archive-wal", str(segs[0])], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            new = {p.name for p in (repo / "snapshots").iterdir()} - before
            if len([n for n in new if not n.startswith(".")]) >= after:
                break
            time.sleep(0.001)
        proc.kill()
        killed = proc.wait(timeout=30) == -signal.SIGKILL
        report.append(f"kill after {after} snapshot(s): {'killed' if killed else 'finished'}")
        # PostgreSQL retries the file it asked for, then goes on with the others in order.
        for seg in segs:
            again = ok(_command(repo, cache, "pg", "archive-wal", str(seg)))
            report.append(f"  {seg.name}: {again.stdout.decode().strip()}")
            _done(seg)
    print("\n" + "\n".join(report))
    assert any("killed" in line for line in report if line.startswith("kill")), report
    assert _wal_snapshots(repo) == [f"segment={s.name}" for s in all_segs]
    _restored_equal(repo, cache, all_segs, tmp_path)
    _restic_check(repo)


def test_restore_wal_prefetches_the_following_segments(repo: Path, tmp_path: Path) -> None:
    """``restore-wal`` for one segment also fetches the next ones of its timeline (verified)
    into the cache; recovery's next calls are answered from there without the repository,
    each file handed over once; a segment that is not archived is still "not found" (1)."""
    cache = tmp_path / "cache"
    segs = _ready(tmp_path / "pg_wal", 0x60, 5)
    ok(_command(repo, cache, "pg", "archive-wal", str(segs[0])))
    for seg in segs[1:]:
        ok(_command(repo, cache, "pg", "archive-wal", str(seg)))
    recovery = tmp_path / "restored_pg_wal"
    recovery.mkdir()
    dest = recovery / "RECOVERYXLOG"
    ok(_command(repo, cache, "pg", "restore-wal", "--prefetch", "3", segs[0].name, str(dest)))
    assert dest.read_bytes() == segs[0].read_bytes()
    prefetched = sorted(p.name for p in (cache / "pitr-prefetch").rglob("0*"))
    assert prefetched == [s.name for s in segs[1:4]]
    for seg in segs[1:4]:
        # No password: served from the prefetched copy, the repository is not opened.
        ok(_command(repo, cache, "pg", "restore-wal", seg.name, str(dest), password=None))
        assert dest.read_bytes() == seg.read_bytes(), seg.name
    assert not list((cache / "pitr-prefetch").rglob("0*"))  # each handed over once
    # Beyond the prefetch: needs the repository again.
    assert _command(repo, cache, "pg", "restore-wal", segs[4].name, str(dest),
                    password=None).returncode != 0
    ok(_command(repo, cache, "pg", "restore-wal", segs[4].name, str(dest)))
    assert dest.read_bytes() == segs[4].read_bytes()
    missing = _command(repo, cache, "pg", "restore-wal", "000000010000000000000070", str(dest))
    assert missing.returncode == 1, missing.stderr

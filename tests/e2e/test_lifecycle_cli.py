"""The lifecycle commands as a user runs them: --as-of everywhere a snapshot is named,
forget's safety rules, prune --dry-run, snapshots --group-by/--latest, diff, stats, unlock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import FAST_KDF, run_cli
from support.cli import ok as _ok

PW = "secret-pw"
TIMES = ["2024-01-01 10:00:00", "2024-01-02 10:00:00", "2024-01-03 10:00:00"]




@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Three snapshots of one file (v1, v2, v3) a day apart (local time), the middle one
    tagged 'mid', plus one from another host; returns (repo, source, ids oldest first)."""
    root = tmp_path_factory.mktemp("lifecycle")
    src = root / "src"
    src.mkdir()
    repo = root / "repo"
    _ok(run_cli(repo, "init"))
    for i, when in enumerate(TIMES, start=1):
        (src / "file.txt").write_text(f"v{i}\n")
        if i == 3:
            (src / "added.txt").write_text("new")
        tags = ["--tag", "mid"] if i == 2 else []
        _ok(run_cli(repo, "backup", str(src), "--time", when, *tags))
    _ok(run_cli(repo, "backup", str(src), "--time", "2024-01-05 00:00:00", "--host", "other"))
    snaps = json.loads(_ok(run_cli(repo, "--json", "snapshots", "--host",
                                   os.uname().nodename)).stdout)
    return repo, src, [s["id"] for s in snaps]


@pytest.mark.parametrize(("as_of", "content"), [
    ("2024-01-02 10:00:00", b"v2\n"),     # exactly a snapshot's time
    ("2024-01-02 23:59:59", b"v2\n"),     # between two snapshots
    ("2024-01-03", b"v2\n"),              # a date means its first instant
    ("2030-01-01", b"v3\n"),              # after the last
])
def test_dump_as_of(history: tuple[Path, Path, list[str]], as_of: str, content: bytes) -> None:
    repo, src, _ = history
    out = _ok(run_cli(repo, "dump", "--as-of", as_of, "--host", os.uname().nodename,
                      str(src / "file.txt")))
    assert out.stdout == content


def test_as_of_before_the_first_snapshot_fails(history: tuple[Path, Path, list[str]]) -> None:
    repo, src, _ = history
    proc = run_cli(repo, "dump", "--as-of", "2024-01-01 09:59:59", str(src / "file.txt"))
    assert proc.returncode == 1 and b"no snapshot at or before" in proc.stderr


def test_as_of_respects_filters_and_works_for_restore_and_ls(
    history: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    repo, src, ids = history
    listed = _ok(run_cli(repo, "--json", "ls", "--as-of", "2030-01-01", "--tag", "mid"))
    assert json.loads(listed.stdout.splitlines()[0])["id"] == ids[1]
    ls_dir = _ok(run_cli(repo, "ls", "--as-of", "2024-01-03 12:00:00", "--host",
                         os.uname().nodename, str(src)))
    assert f"{src}/added.txt" in ls_dir.stdout.decode()
    _ok(run_cli(repo, "restore", "latest", "--as-of", "2024-01-01 12:00:00",
                "--target", str(tmp_path / "r")))
    assert (tmp_path / "r" / str(src).lstrip("/") / "file.txt").read_text() == "v1\n"
    both = run_cli(repo, "restore", ids[0][:8], "--as-of", "2024-01-02", "--target", "x")
    assert both.returncode == 1 and b"either a snapshot id or --as-of" in both.stderr


def test_diff_and_diff_as_of(history: tuple[Path, Path, list[str]]) -> None:
    repo, src, ids = history
    text = _ok(run_cli(repo, "diff", ids[0], ids[2])).stdout.decode()
    assert f"M    {src}/file.txt" in text and f"+    {src}/added.txt" in text
    lines = [json.loads(x) for x in
             _ok(run_cli(repo, "--json", "diff", "--as-of", "2024-01-02 12:00", ids[2])).stdout
             .splitlines()]
    changes = {(c["modifier"], c["path"]) for c in lines if c["message_type"] == "change"}
    assert changes == {("M", f"{src}/file.txt"), ("+", f"{src}/added.txt")}
    assert lines[-1]["source_snapshot"] == ids[1] and lines[-1]["added"]["files"] == 1
    back = _ok(run_cli(repo, "diff", ids[2], ids[0])).stdout.decode()
    assert f"-    {src}/added.txt" in back


def test_snapshots_group_by_and_latest(history: tuple[Path, Path, list[str]]) -> None:
    repo, _, ids = history
    groups = json.loads(_ok(run_cli(repo, "--json", "snapshots", "--group-by", "host",
                                    "--latest", "1")).stdout)
    by_host = {g["group_key"]["hostname"]: [s["id"] for s in g["snapshots"]] for g in groups}
    assert by_host[os.uname().nodename] == [ids[2]] and len(by_host["other"]) == 1
    two = json.loads(_ok(run_cli(repo, "--json", "snapshots", "--latest", "2")).stdout)
    assert [s["id"] for s in two if s["hostname"] != "other"] == ids[1:]


def test_stats(history: tuple[Path, Path, list[str]]) -> None:
    repo, src, _ = history
    st = json.loads(_ok(run_cli(repo, "--json", "stats")).stdout)
    # restic's restore-size total_file_count counts every node (directories too, the
    # source's ancestors among them: how many depends on where the temp dir is), as restic
    # does; total_size is restic's restore size. Files: file.txt x4, added.txt x2.
    dirs = len(src.parts) - 1
    assert st["snapshots_count"] == 4 and st["total_file_count"] == 4 * dirs + 6
    assert st["total_size"] == st["restore_size"]
    assert st["restore_size"] == 3 * 3 + 3 + 3 + 3  # file.txt x4, added.txt x2
    assert st["raw_file_data_size"] == 4 * 3  # v1 v2 v3 "new"; the 4th snapshot dedups
    assert st["dedup_ratio"] == pytest.approx(18 / 12, rel=1e-3)


def test_forget_safety_rules(history: tuple[Path, Path, list[str]]) -> None:
    repo, _, _ = history
    empty = run_cli(repo, "forget")
    assert empty.returncode == 1 and b"no policy was specified" in empty.stderr
    unsafe = run_cli(repo, "forget", "--unsafe-allow-remove-all")
    assert unsafe.returncode == 1 and b"needs a snapshot filter" in unsafe.stderr
    last = run_cli(repo, "forget", "--keep-tag", "nothing-has-this")
    assert last.returncode == 1 and b"refusing to delete the last snapshot" in last.stderr
    old = json.loads(_ok(run_cli(repo, "--json", "forget", "--keep-tag", "nothing-has-this",
                                 "--restic-compat", "0.14", "--dry-run")).stdout)
    assert sum(len(g["remove"]) for g in old) == 4  # restic 0.14 would remove them all
    dry = json.loads(_ok(run_cli(repo, "--json", "forget", "--unsafe-allow-remove-all",
                                 "--host", "other", "--dry-run")).stdout)
    assert [len(g["remove"]) for g in dry] == [1]
    assert len(json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)) == 4


def test_forget_ids_and_prune_dry_run_change_nothing_then_prune(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    _ok(run_cli(repo, "init"))
    (src / "a.bin").write_bytes(os.urandom(50_000))
    _ok(run_cli(repo, "backup", str(src)))
    (src / "a.bin").write_bytes(os.urandom(50_000))
    _ok(run_cli(repo, "backup", str(src)))
    first = json.loads(_ok(run_cli(repo, "--json", "snapshots")).stdout)[0]["id"]
    _ok(run_cli(repo, "forget", first[:8]))
    listing = sorted(p.name for p in (repo / "data").rglob("*") if p.is_file())
    dry = json.loads(_ok(run_cli(repo, "--json", "prune", "--dry-run")).stdout)
    assert dry["dry_run"] and dry["bytes_freed"] > 40_000 and dry["delete"]
    assert sorted(p.name for p in (repo / "data").rglob("*") if p.is_file()) == listing
    done = json.loads(_ok(run_cli(repo, "--json", "prune")).stdout)
    assert done["packs_deleted"] == len(dry["delete"]) + len(dry["repack"])
    assert not set(dry["delete"]) & {p.name for p in (repo / "data").rglob("*")}


def test_unlock_removes_the_lock_of_a_killed_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _ok(run_cli(repo, "init"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_BACKUP_")}
    env.update(AIRFLOW_BACKUP_PASSWORD=PW, AIRFLOW_BACKUP_KDF_PARAMS=FAST_KDF,
               AIRFLOW_BACKUP_FAULTS="crash_at=1")  # dies right after writing its lock
    proc = subprocess.run([sys.executable, "-m", "airflow_backup.cli", "-r", str(repo),
                           "prune"], env=env, capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert len(os.listdir(repo / "locks")) == 1
    out = _ok(run_cli(repo, "unlock"))
    assert b"removed 1 lock" in out.stdout and os.listdir(repo / "locks") == []

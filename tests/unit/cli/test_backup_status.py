"""restic's backup progress (cli/progress.BackupStatus): the status message's fields and the
terminal line, before and after the scan ahead has found the totals."""

from __future__ import annotations

from pathlib import Path

from airflow_backup.archiver.events import ArchiveStats
from airflow_backup.archiver.exclude import Exclusions
from airflow_backup.archiver.scan import Scanner, ScanTotals
from airflow_backup.cli.progress import BackupStatus


class FakeScan:
    def __init__(self) -> None:
        self.now = ScanTotals()

    def totals(self) -> ScanTotals:
        return self.now


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def _status() -> tuple[BackupStatus, FakeScan, Clock]:
    scan, clock = FakeScan(), Clock()
    status = BackupStatus(terminal=False, json_mode=False, scanner=scan,  # type: ignore[arg-type]
                          clock=clock)
    return status, scan, clock


def test_without_totals_it_shows_counts_but_no_percent_or_eta() -> None:
    status, scan, clock = _status()
    scan.now = ScanTotals(files=40, bytes=4_000_000)  # still scanning
    status.update(ArchiveStats(total_files_processed=3, total_bytes_processed=300_000), "/d/a")
    clock.t += 5
    msg = status.status()
    assert "percent_done" not in msg and "seconds_remaining" not in msg
    assert msg["files_done"] == 3 and msg["total_files"] == 40
    assert msg["current_files"] == ["/d/a"]
    assert status.line() == "[0:05] 3 files 292.969 KiB, total 40 files 3.815 MiB, 0 errors"


def test_with_totals_it_shows_percent_and_an_eta_from_the_rate_so_far() -> None:
    status, scan, clock = _status()
    scan.now = ScanTotals(files=100, bytes=1000, done=True)
    clock.t += 30
    status.update(ArchiveStats(total_files_processed=25, total_bytes_processed=250,
                               errors=[("x", "denied")]))
    msg = status.status()
    assert msg["percent_done"] == 0.25
    assert msg["seconds_remaining"] == 90  # 30 s for a quarter: 90 s for the rest
    assert msg["seconds_elapsed"] == 30 and msg["error_count"] == 1
    assert status.line() == ("[0:30] 25.00%  25 files 250 B, total 100 files 1000 B, "
                             "1 errors ETA 1:30")
    clock.t += 3600
    assert status.line().startswith("[1:00:30] ")


def test_the_scan_counts_what_the_backup_would_keep(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_bytes(b"x" * 10)
    (tmp_path / "d" / "sub" / "b.log").write_bytes(b"y" * 20)
    (tmp_path / "d" / "sub" / "c.txt").write_bytes(b"z" * 30)
    paths = [str(tmp_path / "d"), str(tmp_path / "d" / "sub")]  # nested: counted once
    with Scanner(paths, Exclusions(excludes=["*.log"], targets=paths)) as scan:
        assert scan.wait(10)
        totals = scan.totals()
    assert totals == ScanTotals(files=2, bytes=40, dirs=2, done=True)


def test_phase_lines_as_restic_check_prints_them() -> None:
    from airflow_backup.cli.progress import PhaseProgress

    clock = Clock()
    progress = PhaseProgress(json_mode=False, quiet=False, clock=clock)
    progress("read-data", 0, 20)  # a phase starts: its clock starts
    clock.t += 3
    assert progress.line("read-data", 9, 20) == "[0:03] 45.00%  9 / 20 packs"
    assert progress.line("index", 1, 1) == "[0:03] 100.00%  1 / 1 index files loaded"
    assert progress.line("trees", 7, 0) == "[0:03] 7 snapshots"

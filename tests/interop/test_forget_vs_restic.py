"""Our ``forget --dry-run --json`` decides exactly what restic's does, on the same repository.

The history: 315 snapshots over three years from three hosts, with tags, two path sets, many
UTC offsets, bursts of several snapshots per day and hour, and one snapshot in the future.
Every policy combination runs both tools on that repository; the groups, the kept and removed
snapshot ids (in order), and every kept snapshot's reasons and counters must be identical.
The binary is restic 0.14, so ours runs with ``--restic-compat 0.14``; the current rules (the
default) are checked against a hand-derived expectation below.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_backup.archiver.archive import Archiver, BackupOptions
from airflow_backup.repository.keys import KdfParams
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.timefmt import parse_ns
from airflow_backup.storage.local import LocalStorage
from support.cli import run_cli
from support.tools import run_restic

pytestmark = [pytest.mark.restic, pytest.mark.slow]

PW = "secret-pw"
HOSTS = ("alpha", "beta", "gamma")
TAG_SETS: list[list[str]] = [[], ["nightly"], ["nightly", "db"], ["db", "nightly"], ["manual"]]
OFFSETS_H = (0, 1, 2, -5, 5.5, -8, 9, 14, -3.5)
START = datetime(2021, 1, 4, tzinfo=UTC)
END = datetime(2023, 12, 28, tzinfo=UTC)

POLICIES: list[list[str]] = [
    ["--keep-last", "7"],
    ["--keep-hourly", "30"],
    ["--keep-daily", "14"],
    ["--keep-weekly", "10"],
    ["--keep-monthly", "12"],
    ["--keep-yearly", "5"],
    ["--keep-within", "3m15d"],
    ["--keep-within", "1y2m", "--keep-last", "3"],
    ["--keep-within-hourly", "2d", "--keep-within-daily", "1m", "--keep-within-weekly", "6m",
     "--keep-within-monthly", "1y6m", "--keep-within-yearly", "5y"],
    ["--keep-tag", "manual", "--keep-tag", "nightly,db", "--keep-last", "2"],
    ["--keep-tag=", "--keep-monthly", "2"],
    ["--group-by", "host", "--keep-daily", "5", "--keep-weekly", "4", "--keep-monthly", "6"],
    ["--group-by", "tags", "--keep-last", "3", "--keep-monthly", "3"],
    ["--group-by", "host,paths,tags", "--keep-last", "1", "--keep-within", "10d"],
    ["--group-by", "", "--keep-weekly", "8", "--keep-yearly", "2"],
    ["--host", "alpha", "--tag", "nightly", "--keep-daily", "10"],
    ["--tag", "manual", "--tag", "db", "--keep-weekly", "3", "--keep-hourly", "5"],
    ["--keep-daily", "7", "--keep-weekly", "5", "--keep-monthly", "12", "--keep-yearly", "3"],
]


def _times(rng: random.Random) -> list[datetime]:
    """About 105 instants over three years: sparse early, dense and bursty recently."""
    out: set[datetime] = set()
    span = (END - START).days
    while len(out) < 65:
        day = START + timedelta(days=rng.randrange(span - 60))
        out.add(day + timedelta(seconds=rng.randrange(86400)))
    while len(out) < 105:
        day = END - timedelta(days=rng.randrange(60))
        base = day + timedelta(seconds=rng.randrange(86400))
        for _ in range(rng.choice((1, 1, 2, 3))):
            out.add(base + timedelta(minutes=rng.randrange(0, 180)))
    return sorted(out)[:105]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Write the history through the engine's archiver (backup --time, --host, --tag)."""
    root = tmp_path_factory.mktemp("forget-history")
    src_a, src_b = root / "srcA", root / "srcB"
    for d in (src_a, src_b):
        d.mkdir()
        (d / "file.txt").write_text(d.name)
    repo = Repository.init(LocalStorage(root / "repo"), PW, kdf=KdfParams(1024, 8, 1))
    rng = random.Random(20240601)
    count = 0
    for host in HOSTS:
        for i, when in enumerate(_times(rng)):
            tz = timezone(timedelta(hours=rng.choice(OFFSETS_H)))
            paths = [str(src_a)] if host != "gamma" or i % 3 else [str(src_b), str(src_a)]
            opts = BackupOptions(paths=paths, tags=list(rng.choice(TAG_SETS)), hostname=host,
                                 time=when.astimezone(tz))
            Archiver(repo).backup(opts)
            count += 1
    future = BackupOptions(paths=[str(src_a)], hostname="beta", tags=["nightly"],
                           time=datetime(2099, 1, 1, tzinfo=UTC))
    Archiver(repo).backup(future)
    assert count + 1 >= 300
    return root / "repo", str(src_a)


def _normalise(groups: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in groups or []:
        key = json.dumps([g["host"], g["paths"], g["tags"]])
        keep = [s["id"] for s in g["keep"] or []]
        reasons = [(r["matches"], r.get("counters") or {}) for r in g["reasons"] or []]
        assert len(reasons) == len(keep)
        out[key] = {"keep": keep, "remove": [s["id"] for s in g["remove"] or []],
                    "reasons": dict(zip(keep, reasons, strict=True)),
                    "times": {s["id"]: parse_ns(s["time"])[0]
                              for s in (g["keep"] or []) + (g["remove"] or [])}}
    return out


def _ours(repo: Path, *args: str) -> dict[str, Any]:
    proc = run_cli(repo, "--json", "forget", "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return _normalise(json.loads(proc.stdout))


def _theirs(repo: Path, restic_bin: str, *args: str) -> dict[str, Any]:
    proc = run_restic(repo, "forget", "--dry-run", "--json", *args, password=PW,
                      restic_bin=restic_bin)
    return _normalise(json.loads(proc.stdout or b"null"))


@pytest.mark.parametrize("policy", POLICIES, ids=[" ".join(p) for p in POLICIES])
def test_forget_keeps_exactly_what_restic_keeps(history: tuple[Path, str], restic_bin: str,
                                                policy: list[str]) -> None:
    repo, _ = history
    ours = _ours(repo, "--restic-compat", "0.14", *policy)
    theirs = _theirs(repo, restic_bin, *policy)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key]["times"] == theirs[key]["times"], f"group {key}: members differ"
        assert ours[key]["keep"] == theirs[key]["keep"], f"group {key}: kept differs"
        assert ours[key]["remove"] == theirs[key]["remove"], f"group {key}: removed differs"
        assert ours[key]["reasons"] == theirs[key]["reasons"], f"group {key}: reasons differ"
    kept = sum(len(g["keep"]) for g in theirs.values())
    removed = sum(len(g["remove"]) for g in theirs.values())
    assert kept > 0 and removed > 0, "a comparison that keeps or removes nothing proves little"


def test_current_rules_add_only_the_oldest_snapshot_of_unfilled_groups(
    history: tuple[Path, str], restic_bin: str
) -> None:
    repo, _ = history
    # Ten yearly slots never fill in three years: restic >= 0.16 also keeps each group's oldest.
    theirs = _theirs(repo, restic_bin, "--keep-yearly", "10")
    ours = _ours(repo, "--keep-yearly", "10")
    changed = 0
    for key, group in theirs.items():
        oldest = min(group["times"], key=group["times"].__getitem__)
        if oldest in group["keep"]:
            expected_keep, expected_remove = group["keep"], group["remove"]
        else:
            changed += 1
            expected_keep = [*group["keep"], oldest]
            expected_remove = [i for i in group["remove"] if i != oldest]
            assert ours[key]["reasons"][oldest][0] == ["oldest yearly snapshot"]
        assert ours[key]["keep"] == expected_keep
        assert ours[key]["remove"] == expected_remove
    assert changed > 0

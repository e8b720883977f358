"""``backup --dry-run`` (``-n``) as restic's: nothing is written — the repository's files
are byte for byte what they were, no lock, no snapshot, no cache — and the summary says what
a real backup then adds ("Would add to the repository", and the same counters), with
``dry_run`` and no ``snapshot_id`` in the JSON summary."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from support.cli import ok_stdout, repo, run_cli

__all__ = ["repo"]


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _summary(stdout: str) -> dict[str, object]:
    last: dict[str, object] = json.loads(stdout.splitlines()[-1])
    assert last["message_type"] == "summary"
    return last


def test_a_dry_run_writes_nothing_and_predicts_the_real_backup(repo: Path,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(os.urandom(300_000))
    (data / "sub" / "b.txt").write_text("b\n" * 1000)
    ok_stdout(run_cli(repo, "backup", data))
    (data / "c.bin").write_bytes(os.urandom(200_000))  # something to add
    cache = tmp_path / "cache"
    before = _files(repo)
    env = {"AIRFLOW_BACKUP_CACHE_DIR": str(cache)}
    text = ok_stdout(run_cli(repo, "backup", "--dry-run", data, env=env))
    assert "Would add to the repository:" in text and "saved" not in text
    dry = _summary(ok_stdout(run_cli(repo, "--json", "backup", "-n", data, env=env)))
    assert dry["dry_run"] is True and "snapshot_id" not in dry
    assert _files(repo) == before, "a dry run wrote to the repository"
    assert not cache.exists() or not any(cache.rglob("*"))
    real = _summary(ok_stdout(run_cli(repo, "--json", "backup", data, env=env)))
    for key in ("files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
                "data_blobs", "data_added", "total_files_processed",
                "total_bytes_processed"):
        assert dry[key] == real[key], key
    assert real["files_new"] == 1 and "snapshot_id" in real
    assert len(json.loads(ok_stdout(run_cli(repo, "--json", "snapshots")))) == 2

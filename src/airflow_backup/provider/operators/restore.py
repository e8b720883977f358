"""RestoreOperator and RestoreDrillOperator (restore the latest snapshot into a temporary
directory, compare it with the snapshot, measure the recovery time)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from airflow_backup.errors import RestoreMismatch
from airflow_backup.provider.errors import engine_errors
from airflow_backup.provider.hooks.repository import BackupRepositoryHook
from airflow_backup.provider.operators.base import RepositoryOperator, snapshot_filter
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.select import resolve_snapshot
from airflow_backup.restorer.restore import RestoreOptions, Restorer
from airflow_backup.sources.actions import restore_source
from airflow_backup.sources.base import SourceRestoreOptions
from airflow_backup.sources.registry import is_source_url

__all__ = ["RestoreDrillOperator", "RestoreOperator", "expected_files"]


class RestoreOperator(RepositoryOperator):
    """Restore one snapshot — ``snapshot`` (``"latest"`` or an id prefix) or the newest one at
    or before ``as_of`` (``"2026-01-02 03:04:05"``, RFC 3339), among those matching
    ``job``/``tags``/``host`` — into ``target``: a directory, or a data-source URL for source
    snapshots (``on_existing``: ``fail``/``replace``; counts and checksums are compared
    after restoring). Returns what was restored."""

    template_fields: Sequence[str] = ("snapshot", "as_of", "target", "tags", "host")

    def __init__(self, *, target: str, snapshot: str = "latest", as_of: str | None = None,
                 job: str | None = None, tags: Sequence[str] = (), host: str | None = None,
                 on_existing: str = "fail",
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.target = target
        self.snapshot = snapshot
        self.as_of = as_of
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.on_existing = on_existing

    def execute(self, context: Context) -> dict[str, Any]:
        """Restore; return snapshot id, counts and duration."""
        started = time.monotonic()
        with engine_errors():
            repo = self.open_repository()
            flt = snapshot_filter(job=self.job, tags=self.tags, host=self.host)
            with repo.lock(exclusive=False):
                sn = resolve_snapshot(repo, self.snapshot, flt, self.as_of)
                if is_source_url(self.target):
                    report = restore_source(repo, sn, self.target, SourceRestoreOptions(
                        on_existing=self.on_existing, force=self.on_existing == "replace"))
                    result: dict[str, Any] = {"snapshot_id": sn.id, "target": report.target,
                                              "tables": len(report.checks)}
                else:
                    stats = Restorer(repo).restore(sn, RestoreOptions(target=self.target))
                    result = {"snapshot_id": sn.id, "target": self.target,
                              "files": stats.files, "dirs": stats.dirs, "bytes": stats.bytes}
        result["duration_s"] = round(time.monotonic() - started, 3)
        self.log.info("restored snapshot %s: %s", sn.short_id, result)
        return result


def expected_files(repo: Repository, tree_id: bytes, prefix: str = ""
                   ) -> dict[str, tuple[int, str]]:
    """Return ``{relative path: (size, sha256 hex)}`` of every regular file under the tree,
    computed from the stored blobs (independently of the restorer's write path)."""
    out: dict[str, tuple[int, str]] = {}
    for node in repo.load_tree(tree_id):
        path = f"{prefix}/{os.fsdecode(node.name)}" if prefix else os.fsdecode(node.name)
        if node.type == "dir" and node.subtree is not None:
            out.update(expected_files(repo, node.subtree, path))
        elif node.type == "file":
            digest = hashlib.sha256()
            for blob_id in node.content or []:
                digest.update(repo.load_blob(BlobType.DATA, blob_id))
            out[path] = (node.size, digest.hexdigest())
    return out


def _restored_files(root: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            digest = hashlib.sha256()
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            out[os.path.relpath(full, root)] = (os.path.getsize(full), digest.hexdigest())
    return out


class RestoreDrillOperator(RepositoryOperator):
    """A restore drill: restore the latest snapshot matching ``job``/``tags``/``host`` into a
    temporary directory (under ``work_dir`` if given), then compare every restored file's
    size and SHA-256 and the file count with the snapshot's own records. A difference fails
    the task (RestoreMismatch, no retry). Returns the snapshot id, counts and
    ``rto_seconds`` (open → restored → verified). The directory is always removed."""

    template_fields: Sequence[str] = ("tags", "host", "work_dir")

    def __init__(self, *, job: str | None = None, tags: Sequence[str] = (),
                 host: str | None = None, work_dir: str | None = None,
                 backup_repository_conn_id: str = BackupRepositoryHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(backup_repository_conn_id=backup_repository_conn_id, **kwargs)
        self.job = job
        self.tags = list(tags)
        self.host = host
        self.work_dir = work_dir

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the drill; return its measurements."""
        started = time.monotonic()
        tmp = tempfile.mkdtemp(prefix="airflow-backup-drill-", dir=self.work_dir)
        try:
            with engine_errors():
                repo = self.open_repository()
                flt = snapshot_filter(job=self.job, tags=self.tags, host=self.host)
                with repo.lock(exclusive=False):
                    sn = resolve_snapshot(repo, "latest", flt)
                    stats = Restorer(repo).restore(sn, RestoreOptions(target=tmp))
                    restored_s = time.monotonic() - started
                    expected = expected_files(repo, sn.tree)
                actual = _restored_files(tmp)
                if actual != expected:
                    missing = sorted(set(expected) - set(actual))
                    differing = sorted(p for p in expected.keys() & actual.keys()
                                       if expected[p] != actual[p])
                    raise RestoreMismatch(
                        f"drill of snapshot {sn.short_id}: {len(missing)} file(s) missing, "
                        f"{len(differing)} differ, {len(set(actual) - set(expected))} extra; "
                        f"first: {(missing + differing + [''])[0]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result = {"snapshot_id": sn.id, "snapshot_time": sn.time, "files": len(actual),
                  "bytes": sum(size for size, _ in actual.values()), "dirs": stats.dirs,
                  "restore_seconds": round(restored_s, 3),
                  "rto_seconds": round(time.monotonic() - started, 3)}
        self.log.info("restore drill passed: %s", result)
        return result

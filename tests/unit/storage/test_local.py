"""LocalStorage under real filesystem failures: errors are mapped and leave nothing behind."""

from __future__ import annotations

import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_backup
from airflow_backup.errors import StorageError
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.local import LocalStorage


def test_a_failed_save_leaves_no_view_of_the_callers_buffer(tmp_path: Path) -> None:
    """A write that fails part way (here: the file size limit, EFBIG) leaves no export of
    the caller's buffer in the error's traceback, so the caller can close it (the packer
    closes its mmap while handling the error)."""
    storage = LocalStorage(tmp_path / "repo")
    storage.create_layout()
    buf = mmap.mmap(-1, 64 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(StorageError, match="too large") as info, memoryview(buf) as data:
            storage.save(Handle(FileType.DATA, "ab" * 32), data)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert info.value.__traceback__ is not None  # the frames are still reachable here
    buf.close()
    assert not any((tmp_path / "repo" / "data" / "ab").iterdir())


# Failures that root does not see: the snippets run in a child without the capabilities that
# bypass permission bits (root) or as they are (any other user), and print how they failed.
_PROBE = """
import sys
from airflow_backup.errors import StorageError
from airflow_backup.storage.base import FileType, Handle
from airflow_backup.storage.local import LocalStorage
storage, op = LocalStorage(sys.argv[1]), sys.argv[2]
try:
    if op == "save":
        storage.save(Handle(FileType.LOCK, "ab" * 32), b"lock")
    elif op == "exists":
        storage.exists(Handle(FileType.CONFIG, "config"))
    else:
        list(storage.list(FileType[op]))
except StorageError as exc:
    print(type(exc).__name__, exc)
"""
_PACKAGE_PARENT = str(Path(airflow_backup.__file__).parent.parent)
_NO_DAC = "--drop=cap_dac_override,cap_dac_read_search"


def _probe(prefix: list[str], root: Path, op: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": _PACKAGE_PARENT}
    return subprocess.run([*prefix, sys.executable, "-c", _PROBE, str(root), op], env=env,
                          capture_output=True, text=True, timeout=60)


def _repo_with_files(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    storage = LocalStorage(root)
    storage.create_layout()
    storage.save(Handle(FileType.CONFIG, "config"), b"config")
    storage.save(Handle(FileType.SNAPSHOT, "cd" * 32), b"snapshot")
    return root


@pytest.mark.parametrize(("where", "mode", "op"), [
    ("", 0o600, "exists"),            # the repository directory is not searchable
    ("", 0o600, "CONFIG"),
    ("data", 0o300, "DATA"),          # data/ cannot be read
    ("snapshots", 0o400, "SNAPSHOT"),  # readable, but its files cannot be stat'ed
])
def test_permission_denied_is_a_storage_error(tmp_path: Path, where: str, mode: int,
                                              op: str) -> None:
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.skip("root needs capsh to drop CAP_DAC_OVERRIDE")
        prefix = ["capsh", _NO_DAC, "--", "-c", 'exec "$0" "$@"']
    else:
        prefix = []
    root = _repo_with_files(tmp_path)
    target = root / where
    target.chmod(mode)
    try:
        done = _probe(prefix, root, op)
    finally:
        target.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PermanentStorageError "), done.stdout
    assert "Permission denied" in done.stdout


def test_a_read_only_file_system_is_a_storage_error(tmp_path: Path) -> None:
    """On a read-only mount even the cleanup of the temp file fails (EROFS); the save's
    error is the one reported, mapped."""
    root = _repo_with_files(tmp_path)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only bind mount")
    user_ns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    remount = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 77; '
               'exec "$@"')
    prefix = ["unshare", *user_ns, "--mount", "--propagation", "private", "sh", "-c",
              remount, str(root)]
    done = _probe(prefix, root, "save")
    if done.returncode == 77 or "unshare: " in done.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PermanentStorageError "), done.stdout
    assert "Read-only file system" in done.stdout

"""LocalStorage under real filesystem failures: errors are mapped and leave nothing behind."""

from __future__ import annotations

import mmap
import resource
import signal
from pathlib import Path

import pytest

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

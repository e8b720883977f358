"""Content saving: chunk boundaries do not depend on how the stream is read."""

from __future__ import annotations

import io
import os
import random

import pytest

import airflow_backup.archiver.content as content_mod
import airflow_backup.archiver.reading as reading_mod
from airflow_backup.archiver.chunker import MAX_SIZE, Chunker
from airflow_backup.archiver.content import ContentSaver
from airflow_backup.repository.repo import Repository
from airflow_backup.storage.memory import MemoryStorage


class _Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, view: memoryview) -> int:  # type: ignore[override]
        n = min(len(view), self._step, len(self._data))
        view[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("block", [MAX_SIZE + 1, 9 * 1024 * 1024, 16 * 1024 * 1024])
def test_chunks_match_a_single_cut_of_the_whole_stream(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    data = random.Random(5).randbytes(40 * 1024 * 1024)
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    whole = [data[o : o + n] for o, n in chunker.cut(data)]
    monkeypatch.setattr(content_mod, "_BLOCK", block)
    with ContentSaver(repo, chunker) as saver:
        result = saver.save_stream(_Trickle(data, 3_000_001))  # type: ignore[arg-type]
    assert result.size == len(data)
    import hashlib

    assert result.content == [hashlib.sha256(c).digest() for c in whole]


def test_small_and_empty_files_and_growth(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    empty = root / "empty"
    empty.write_bytes(b"")
    small = root / "small"
    small.write_bytes(os.urandom(1000))
    grown = root / "grown"
    grown.write_bytes(os.urandom(3 * 1024 * 1024))
    with ContentSaver(repo, chunker) as saver:
        r_empty = saver.submit_file(os.fsencode(empty), 0).result()
        r_small = saver.submit_file(os.fsencode(small), 1000).result()
        # The file is larger than its (stale) lstat size said: all of it is still saved.
        r_grown = saver.submit_file(os.fsencode(grown), 10).result()
    assert r_empty.content == [] and r_empty.size == 0
    assert r_small.size == 1000 and len(r_small.content) == 1
    assert r_grown.size == 3 * 1024 * 1024 and len(r_grown.content) >= 2


def test_large_files_share_reused_block_buffers_then_release_them(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large files go through pooled block buffers: a file read after a longer one sees none
    of the longer one's bytes, and a long run of small files gives the buffers back."""
    import hashlib
    from pathlib import Path

    root = Path(str(tmp_path))
    monkeypatch.setattr(content_mod, "_BLOCK", MAX_SIZE + 1)
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    rng = random.Random(7)
    sizes = [20 * 1024 * 1024, 700 * 1024, 9 * 1024 * 1024, 600 * 1024]
    files = []
    for i, size in enumerate(sizes):
        path = root / f"large{i}"
        path.write_bytes(rng.randbytes(size))
        files.append(path)
    with ContentSaver(repo, chunker, workers=1) as saver:
        for path in files:
            data = path.read_bytes()
            result = saver.submit_file(os.fsencode(path), len(data)).result()
            assert result.size == len(data)
            assert result.content == [hashlib.sha256(data[o : o + n]).digest()
                                      for o, n in chunker.cut(data)]
        assert saver._blocks.qsize() == 1  # one worker: one buffer, reused for every file
        small = root / "small"
        small.write_bytes(b"x" * 100)
        for _ in range(content_mod._RELEASE_AFTER_BATCHES):
            fut = saver.submit_small(os.fsencode(small), 100)
            saver.flush()
            fut.result()
    assert saver._blocks.empty()  # checked once the workers are joined


def test_a_batch_opens_its_files_together_and_reports_each_failure(tmp_path: object) -> None:
    """Small files are opened a batch at a time (and read ahead): a file that vanished fails
    alone, the others are saved, and no descriptor is left open."""
    from pathlib import Path

    root = Path(str(tmp_path))
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    paths = []
    for i in range(10):
        p = root / f"f{i}"
        p.write_bytes(bytes([i]) * (100 + i))
        paths.append(p)
    fds_before = len(os.listdir("/proc/self/fd"))
    with ContentSaver(repo, chunker, workers=1) as saver:
        futs = []
        for i, p in enumerate(paths):
            futs.append(saver.submit_small(os.fsencode(p), 100 + i))
        paths[3].unlink()  # gone before the batch is handed to a worker
        saver.flush()
        results = []
        for fut in futs:
            try:
                results.append(fut.result().size)
            except OSError as exc:
                results.append(type(exc).__name__)
    assert results == [100, 101, 102, "FileNotFoundError", 104, 105, 106, 107, 108, 109]
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_an_interrupted_batch_leaves_no_file_waiting(tmp_path: object,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """If a batch of small files stops half-way for an unexpected reason, every file of it
    still gets an outcome, so whoever waits on one is not left waiting forever."""
    from pathlib import Path

    root = Path(str(tmp_path))
    repo = Repository.init(MemoryStorage(), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    opened = 0
    real_open = reading_mod.open_ahead

    def flaky_open(path: bytes) -> int | OSError:
        nonlocal opened
        opened += 1
        if opened == 3:
            raise RuntimeError("boom")
        return real_open(path)

    monkeypatch.setattr(reading_mod, "open_ahead", flaky_open)
    fds_before = len(os.listdir("/proc/self/fd"))
    with ContentSaver(repo, chunker, workers=1) as saver:
        items = []
        for i in range(5):
            p = root / f"f{i}"
            p.write_bytes(b"y" * 10)
            items.append(saver.submit_small(os.fsencode(p), 10))
        saver.flush()
        for item in items:
            with pytest.raises(RuntimeError):
                item.result()
    assert len(os.listdir("/proc/self/fd")) == fds_before


def _small_tree(root: object, count: int) -> list[tuple[bytes, bytes]]:
    from pathlib import Path

    rng = random.Random(11)
    files = []
    for i in range(count):
        path = Path(str(root)) / f"s{i:03}"
        data = rng.randbytes(rng.randrange(0, 3000)) + b"text " * rng.randrange(0, 2000)
        path.write_bytes(data)
        files.append((os.fsencode(path), data))
    return files


def _save_small(repo: Repository, files: list[tuple[bytes, bytes]],
                kill_worker: bool = False) -> tuple[list[list[bytes]], int]:
    import signal

    chunker = Chunker(repo.config.chunker_polynomial)
    with ContentSaver(repo, chunker, workers=2) as saver:
        forked = len(saver._forked)
        if kill_worker:
            for worker in saver._forked:
                os.kill(worker.pid, signal.SIGKILL)
        items = [saver.submit_small(path, len(data)) for path, data in files]
        saver.flush()
        contents = [item.result().content for item in items]
    repo.flush()
    return contents, forked


@pytest.mark.skipif(not content_mod.forking_allowed(), reason="needs fork and two cores")
def test_small_files_sealed_in_a_forked_process_match_those_sealed_here(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On local storage small files are sealed by a forked process; the blobs it makes are
    the ones a thread of ours would make, and they read back through the index."""
    import hashlib
    from pathlib import Path

    from airflow_backup.repository.packs import BlobType
    from airflow_backup.storage.local import LocalStorage

    root = Path(str(tmp_path))
    (root / "src").mkdir()
    files = _small_tree(root / "src", 300)
    forked_repo = Repository.init(LocalStorage(root / "forked"), "pw")
    contents, forked = _save_small(forked_repo, files)
    assert forked == content_mod._SEALERS
    monkeypatch.setenv("AIRFLOW_BACKUP_NO_FORK", "1")
    here_repo = Repository.init(LocalStorage(root / "here"), "pw")
    here_contents, none = _save_small(here_repo, files)
    assert none == 0
    assert contents == here_contents
    assert contents == [[hashlib.sha256(d).digest()] if d else [] for _, d in files]
    for (_, data), content in zip(files, contents, strict=True):
        for blob_id in content:
            assert forked_repo.load_blob(BlobType.DATA, blob_id) == data


@pytest.mark.skipif(not content_mod.forking_allowed(), reason="needs fork and two cores")
def test_a_lost_sealer_process_leaves_its_work_to_the_thread(tmp_path: object) -> None:
    import hashlib
    from pathlib import Path

    from airflow_backup.storage.local import LocalStorage

    root = Path(str(tmp_path))
    (root / "src").mkdir()
    files = _small_tree(root / "src", 150)
    repo = Repository.init(LocalStorage(root / "repo"), "pw")
    contents, forked = _save_small(repo, files, kill_worker=True)
    assert forked == content_mod._SEALERS
    assert contents == [[hashlib.sha256(d).digest()] if d else [] for _, d in files]


@pytest.mark.parametrize("forked", [False, True])
def test_a_small_file_that_grew_past_a_chunk_is_chunked_whole(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch, forked: bool) -> None:
    """Queued as small (its lstat said so) but larger when read: the whole file is saved,
    in chunks, whether a thread or the forked worker read the batch."""
    import hashlib
    from pathlib import Path

    from airflow_backup.storage.local import LocalStorage

    if forked and not content_mod.forking_allowed():
        pytest.skip("needs fork and two cores")
    if not forked:
        monkeypatch.setenv("AIRFLOW_BACKUP_NO_FORK", "1")
    root = Path(str(tmp_path))
    data = random.Random(3).randbytes(3 * MAX_SIZE // 2)
    (root / "grown").write_bytes(data)
    (root / "small").write_bytes(b"tiny")
    repo = Repository.init(LocalStorage(root / "repo"), "pw")
    chunker = Chunker(repo.config.chunker_polynomial)
    with ContentSaver(repo, chunker, workers=2) as saver:
        assert len(saver._forked) == (content_mod._SEALERS if forked else 0)
        grown = saver.submit_small(os.fsencode(root / "grown"), 100)
        small = saver.submit_small(os.fsencode(root / "small"), 4)
        saver.flush()
        result = grown.result()
        assert small.result().size == 4
    assert result.size == len(data)
    assert result.content == [hashlib.sha256(data[o : o + n]).digest()
                              for o, n in chunker.cut(data)]

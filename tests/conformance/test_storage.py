"""The Storage protocol, one suite for every backend.

Backends: in-memory, local directory, S3 (a moto server on 127.0.0.1, started by the session
fixture ``moto_server``; never a real cloud), an fsspec filesystem without atomic writes
(fsspec's memory filesystem: the temp-file-then-move path that SFTP uses), and the full
wrapper stack over memory (read-ahead over retry over fault injection at a 30 % failure rate,
with truncated writes and lost replies), which must keep the same contract.

A new backend joins by adding a parameter to the ``storage`` fixture.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.errors import NotFound, PermanentStorageError
from airflow_backup.storage import (
    FileInfo,
    FileType,
    Handle,
    LocalStorage,
    MemoryStorage,
    Storage,
    object_path,
)
from airflow_backup.storage.base import Capabilities, is_strongly_consistent, load_into
from airflow_backup.storage.compose import open_repository_storage
from airflow_backup.storage.fsspec_store import FsspecStorage
from airflow_backup.storage.retry import RetryPolicy

CONFIG = Handle(FileType.CONFIG, "config")
TYPES_WITH_IDS = [FileType.DATA, FileType.INDEX, FileType.KEY, FileType.LOCK,
                  FileType.SNAPSHOT]


def fid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


BACKENDS = ["memory", "local", "s3", "fsspec-nonatomic", "retry+faults"]
#: Backends whose create-if-absent is a check followed by a write (not atomic).
NON_ATOMIC_CREATE = {"fsspec-nonatomic"}
#: Backends that declare a saved file visible to every reader at once.
STRONGLY_CONSISTENT = {"memory", "local", "retry+faults"}


def _fsspec_memory_storage() -> FsspecStorage:
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store = {}
    fs.pseudo_dirs = [""]
    return FsspecStorage(fs, f"/repo-{uuid.uuid4().hex[:8]}", atomic_writes=False)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    kind = request.param
    if kind == "memory":
        yield MemoryStorage()
        return
    backend: Storage
    if kind == "local":
        backend = LocalStorage(tmp_path / "repo")
    elif kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        backend = open_repository_storage(f"s3://{bucket}/some/prefix")
    elif kind == "fsspec-nonatomic":
        backend = _fsspec_memory_storage()
    else:
        backend = open_repository_storage(
            backend=MemoryStorage(),
            policy=RetryPolicy(max_attempts=30, base_delay=0.0, max_elapsed=60),
            faults={"failure_rate": 0.3, "truncate_writes": 0.3, "lost_replies": 0.3,
                    "seed": 7},
            read_ahead=True)
    backend.create_layout()
    yield backend


def test_implements_the_protocol(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert storage.location


def test_declares_its_capabilities(storage: Storage, request: pytest.FixtureRequest) -> None:
    """Every backend and wrapper stack declares what it can do; the helpers answer from it."""
    caps = storage.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.io_workers >= 1
    kind = request.node.callspec.params["storage"]
    assert caps.strongly_consistent is (kind in STRONGLY_CONSISTENT)
    assert is_strongly_consistent(storage) is caps.strongly_consistent
    assert caps.load_into is (kind == "local")


@pytest.mark.parametrize("file_type", TYPES_WITH_IDS)
def test_save_then_load(storage: Storage, file_type: FileType) -> None:
    h = Handle(file_type, fid("a"))
    data = os.urandom(1000)
    storage.save(h, data)
    assert storage.exists(h)
    assert storage.load(h) == data
    assert storage.stat(h) == FileInfo(h.name, 1000)


def test_config_is_a_single_file(storage: Storage) -> None:
    storage.save(CONFIG, b"cfg")
    assert storage.load(CONFIG) == b"cfg"
    assert list(storage.list(FileType.CONFIG)) == [FileInfo("config", 3)]


def test_empty_file(storage: Storage) -> None:
    h = Handle(FileType.INDEX, fid("empty"))
    storage.save(h, b"")
    assert storage.load(h) == b""
    assert storage.stat(h).size == 0


@pytest.mark.parametrize(("offset", "length", "expected"), [
    (0, None, b"0123456789"),
    (3, None, b"3456789"),
    (3, 4, b"3456"),
    (0, 0, b""),
    (9, 1, b"9"),
    (8, 10, b"89"),       # a range past the end is cut at the end
    (10, None, b""),
    (20, 5, b""),
])
def test_load_range(storage: Storage, offset: int, length: int | None, expected: bytes) -> None:
    h = Handle(FileType.DATA, fid("range"))
    storage.save(h, b"0123456789")
    assert storage.load(h, offset, length) == expected


@pytest.mark.parametrize(("offset", "size", "expected"), [
    (0, 10, b"0123456789"),
    (3, 4, b"3456"),
    (0, 0, b""),
    (8, 10, b"89"),       # fewer bytes only at the end of the file
    (10, 5, b""),
    (20, 5, b""),
])
def test_load_into_a_buffer(storage: Storage, offset: int, size: int, expected: bytes) -> None:
    """``load_into`` (restore reads packs into a buffer it reuses) returns what ``load``
    returns, natively or through ``load``; bytes past the count are left alone."""
    h = Handle(FileType.DATA, fid("into"))
    storage.save(h, b"0123456789")
    buf = bytearray(b"#" * (size + 3))
    n = load_into(storage, h, offset, memoryview(buf)[:size])
    assert bytes(buf[:n]) == expected
    assert buf[n:] == b"#" * (size + 3 - n)
    with pytest.raises(NotFound):
        load_into(storage, Handle(FileType.DATA, fid("missing")), 0, memoryview(buf))


def test_local_wrappers_read_into_the_buffer_natively(tmp_path: Path) -> None:
    """Retries, fault injection and the metadata cache pass ``load_into`` through to the
    local backend, so restore reads straight into its buffer; injected faults are retried."""
    from airflow_backup.storage.compose import with_cache

    stack = open_repository_storage(
        url=str(tmp_path / "repo"), policy=RetryPolicy(max_attempts=30, base_delay=0.0),
        faults={"failure_rate": 0.5, "operations": ["load"], "seed": 3})
    stack.create_layout()
    cached = with_cache(stack, "ab" * 32, cache_root=tmp_path / "cache")
    h = Handle(FileType.DATA, fid("native"))
    data = os.urandom(100_000)
    cached.save(h, data)
    calls: list[int] = []
    real = LocalStorage.load_into

    def counting(self: LocalStorage, handle: Handle, offset: int, buf: memoryview) -> int:
        calls.append(len(buf))
        return real(self, handle, offset, buf)

    buf = memoryview(bytearray(50_000))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalStorage, "load_into", counting)
        mp.setattr(LocalStorage, "load", None)  # must not be used for this
        for _ in range(10):
            assert load_into(cached, h, 30_000, buf) == 50_000
            assert bytes(buf) == data[30_000:80_000]
    assert calls == [50_000] * 10


def test_stored_bytes_are_a_copy(storage: Storage) -> None:
    h = Handle(FileType.DATA, fid("copy"))
    buf = bytearray(b"original")
    storage.save(h, buf)
    buf[:] = b"mutated!"
    assert storage.load(h) == b"original"


def test_list_by_type(storage: Storage) -> None:
    saved: dict[FileType, set[FileInfo]] = {}
    for i, t in enumerate(TYPES_WITH_IDS):
        for j in range(3):
            name = fid(f"{t.value}-{j}")
            storage.save(Handle(t, name), b"x" * (i * 10 + j))
            saved.setdefault(t, set()).add(FileInfo(name, i * 10 + j))
    for t in TYPES_WITH_IDS:
        assert set(storage.list(t)) == saved[t]
    assert list(storage.list(FileType.CONFIG)) == []


def test_list_of_an_empty_type(storage: Storage) -> None:
    for t in FileType:
        assert list(storage.list(t)) == []


def test_data_files_live_under_data_xx(storage: Storage) -> None:
    name = fid("pack")
    h = Handle(FileType.DATA, name)
    storage.save(h, b"pack")
    assert object_path(h) == f"data/{name[:2]}/{name}"
    assert object_path(Handle(FileType.SNAPSHOT, name)) == f"snapshots/{name}"
    assert object_path(Handle(FileType.KEY, name)) == f"keys/{name}"
    assert object_path(CONFIG) == "config"
    assert [i.name for i in storage.list(FileType.DATA)] == [name]
    if isinstance(storage, LocalStorage):
        assert (storage.root / "data" / name[:2] / name).read_bytes() == b"pack"


def test_remove(storage: Storage) -> None:
    h = Handle(FileType.SNAPSHOT, fid("gone"))
    keep = Handle(FileType.SNAPSHOT, fid("kept"))
    storage.save(h, b"x")
    storage.save(keep, b"y")
    storage.remove(h)
    assert not storage.exists(h)
    assert [i.name for i in storage.list(FileType.SNAPSHOT)] == [keep.name]
    with pytest.raises(NotFound):
        storage.load(h)
    storage.save(h, b"again")  # a removed name can be written again
    assert storage.load(h) == b"again"


@pytest.mark.parametrize("handle", [Handle(FileType.DATA, fid("missing")),
                                    Handle(FileType.LOCK, fid("missing")), CONFIG])
def test_missing_files_raise_not_found(storage: Storage, handle: Handle) -> None:
    assert not storage.exists(handle)
    with pytest.raises(NotFound):
        storage.load(handle)
    with pytest.raises(NotFound):
        storage.load(handle, 5, 10)
    with pytest.raises(NotFound):
        storage.stat(handle)
    with pytest.raises(NotFound):
        storage.remove(handle)


@pytest.mark.parametrize("file_type", [FileType.DATA, FileType.INDEX, FileType.KEY,
                                       FileType.SNAPSHOT, FileType.CONFIG])
def test_existing_files_are_never_overwritten(storage: Storage, file_type: FileType) -> None:
    h = CONFIG if file_type is FileType.CONFIG else Handle(file_type, fid("dup"))
    storage.save(h, b"first")
    with pytest.raises(PermanentStorageError):
        storage.save(h, b"second")
    assert storage.load(h) == b"first"


def test_locks_may_be_overwritten(storage: Storage) -> None:
    h = Handle(FileType.LOCK, fid("lock"))
    storage.save(h, b"first")
    storage.save(h, b"second, longer")
    assert storage.load(h) == b"second, longer"
    assert storage.stat(h).size == len(b"second, longer")
    assert len(list(storage.list(FileType.LOCK))) == 1


def test_concurrent_saves_from_threads(storage: Storage) -> None:
    expected: dict[Handle, bytes] = {}
    for t in range(8):
        for i in range(25):
            ftype = FileType.DATA if i % 2 else FileType.INDEX
            expected[Handle(ftype, fid(f"{t}-{i}"))] = os.urandom(100 + t * 25 + i)
    items = list(expected.items())
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for h, data in items[t::8]:
                storage.save(h, data)
                assert storage.load(h) == data
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for h, data in expected.items():
        assert storage.load(h) == data
    listed = {(t, i.name) for t in (FileType.DATA, FileType.INDEX) for i in storage.list(t)}
    assert listed == {(h.type, h.name) for h in expected}


def test_concurrent_lock_writes_leave_one_complete_file(storage: Storage) -> None:
    h = Handle(FileType.LOCK, fid("contended"))
    payloads = [bytes([i]) * (1000 + i) for i in range(8)]
    threads = [threading.Thread(target=storage.save, args=(h, p)) for p in payloads]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert storage.load(h) in payloads


# ---- local backend specifics ----------------------------------------------------------


def test_local_files_are_read_only_and_no_temp_files_remain(tmp_path: Path) -> None:
    backend = LocalStorage(tmp_path / "repo")
    backend.create_layout()
    handles = [Handle(FileType.DATA, fid("d")), Handle(FileType.INDEX, fid("i")),
               Handle(FileType.LOCK, fid("l")), CONFIG]
    for h in handles:
        backend.save(h, b"content")
    backend.save(handles[2], b"rewritten lock")
    for h in handles:
        mode = stat.S_IMODE((backend.root / object_path(h)).stat().st_mode)
        assert mode == 0o444, (h, oct(mode))
    files = sorted(str(p.relative_to(backend.root)) for p in backend.root.rglob("*")
                   if p.is_file())
    assert files == sorted(object_path(h) for h in handles)


def test_local_layout(tmp_path: Path) -> None:
    backend = LocalStorage(tmp_path / "repo")
    backend.create_layout()
    backend.create_layout()  # idempotent
    root = backend.root
    for d in ("data", "index", "keys", "locks", "snapshots", "tmp"):
        assert (root / d).is_dir()
    assert sorted(p.name for p in (root / "data").iterdir()) == [f"{i:02x}" for i in range(256)]
    assert backend.location == str(root)


def test_local_save_creates_missing_directories(tmp_path: Path) -> None:
    backend = LocalStorage(tmp_path / "bare")
    h = Handle(FileType.DATA, fid("x"))
    backend.save(h, b"x")
    assert backend.load(h) == b"x"


def test_local_list_skips_leftover_temp_files(tmp_path: Path) -> None:
    backend = LocalStorage(tmp_path / "repo")
    backend.create_layout()
    name = fid("real")
    backend.save(Handle(FileType.INDEX, name), b"x")
    (backend.root / "index" / f".tmp-{name}-abc").write_bytes(b"partial")
    (backend.root / "data" / "ab" / ".tmp-junk").write_bytes(b"partial")
    assert [i.name for i in backend.list(FileType.INDEX)] == [name]
    assert list(backend.list(FileType.DATA)) == []


def test_local_read_only_file_can_be_removed(tmp_path: Path) -> None:
    backend = LocalStorage(tmp_path / "repo")
    h = Handle(FileType.SNAPSHOT, fid("s"))
    backend.save(h, b"s")
    backend.remove(h)
    assert not (backend.root / object_path(h)).exists()


def _race(storage: Storage, handle: Handle, payloads: list[bytes]) -> list[str]:
    """Save ``payloads`` under one name from as many threads at once; return the outcomes."""
    outcomes: list[str] = []
    barrier = threading.Barrier(len(payloads))

    def save(data: bytes) -> None:
        barrier.wait()
        try:
            storage.save(handle, data)
            outcomes.append("ok")
        except PermanentStorageError:
            outcomes.append("exists")

    threads = [threading.Thread(target=save, args=(p,)) for p in payloads]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sorted(outcomes)


def test_concurrent_saves_of_one_name_let_exactly_one_win(
        storage: Storage, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["storage"] in NON_ATOMIC_CREATE:
        pytest.skip("this filesystem has no atomic create-if-absent (documented limitation)")
    payloads = [bytes([i]) * 20_000 for i in range(8)]
    for handle in (CONFIG, Handle(FileType.INDEX, fid("race")),
                   Handle(FileType.DATA, fid("race"))):
        assert _race(storage, handle, payloads) == ["exists"] * 7 + ["ok"], handle
        assert storage.load(handle) in payloads


# ---- every backend: large files, a repository on top, no secrets ------------------------


def test_large_file_round_trip(storage: Storage) -> None:
    data = os.urandom(17 * 1024 * 1024 + 3)
    h = Handle(FileType.DATA, hashlib.sha256(data).hexdigest())
    storage.save(h, data)
    assert storage.stat(h).size == len(data)
    assert storage.load(h, len(data) - 100) == data[-100:]
    assert storage.load(h, 123, 4567) == data[123:4690]
    assert hashlib.sha256(storage.load(h)).hexdigest() == h.name


def test_location_names_no_secret(storage: Storage) -> None:
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    assert storage.location
    if secret:
        assert secret not in storage.location


def test_repository_round_trip(storage: Storage) -> None:
    from airflow_backup.repository.keys import KdfParams
    from airflow_backup.repository.packs import BlobType
    from airflow_backup.repository.repo import Repository

    repo = Repository.init(storage, "pw", kdf=KdfParams(1024, 8, 1))
    blob_id, _ = repo.save_blob(BlobType.DATA, b"hello storage")
    repo.flush()
    again = Repository.open(storage, "pw")
    again.load_index()
    assert again.load_blob(BlobType.DATA, blob_id) == b"hello storage"
    assert again.config.id == repo.config.id


def test_the_suite_covers_memory_local_and_s3() -> None:
    assert {"memory", "local", "s3"} <= set(BACKENDS)

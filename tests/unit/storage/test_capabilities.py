"""Declared capabilities: every backend states them, every wrapper reports its inner
store's (changed only where it changes them), and the helpers answer from them alone."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_backup.storage.base import (
    Capabilities,
    FileInfo,
    FileType,
    Handle,
    Storage,
    io_workers,
    is_strongly_consistent,
    load_into,
    small_files_apart,
)
from airflow_backup.storage.cache import CachingStorage
from airflow_backup.storage.compose import open_repository_storage, with_cache
from airflow_backup.storage.faults import FaultInjectingStorage
from airflow_backup.storage.fsspec_store import FsspecStorage
from airflow_backup.storage.local import LocalStorage
from airflow_backup.storage.memory import MemoryStorage
from airflow_backup.storage.readahead import ReadAheadStorage
from airflow_backup.storage.retry import RetryingStorage
from airflow_backup.storage.wrapper import DelegatingStorage

LOCAL_WORKERS = max(2, min(8, os.cpu_count() or 2))


def _fsspec() -> FsspecStorage:
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store = {}
    fs.pseudo_dirs = [""]
    return FsspecStorage(fs, "/repo", atomic_writes=False)


def _h(data: bytes) -> Handle:
    return Handle(FileType.DATA, hashlib.sha256(data).hexdigest())


# ---- backends ---------------------------------------------------------------------------


def test_each_backend_declares_its_capabilities(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path).capabilities == Capabilities(
        strongly_consistent=True, io_workers=LOCAL_WORKERS, load_into=True,
        small_files_apart=True)
    assert MemoryStorage().capabilities == Capabilities(
        strongly_consistent=True, io_workers=LOCAL_WORKERS, load_into=False,
        small_files_apart=True)
    assert _fsspec().capabilities == Capabilities(
        strongly_consistent=False, io_workers=8, load_into=False, small_files_apart=False)


def test_capabilities_are_frozen_and_checked() -> None:
    caps = Capabilities.remote()
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.strongly_consistent = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="io_workers"):
        Capabilities(strongly_consistent=True, io_workers=0, load_into=False,
                     small_files_apart=False)


# ---- wrappers ---------------------------------------------------------------------------


def _wrappers(inner: Storage, tmp_path: Path) -> dict[str, Storage]:
    return {
        "retry": RetryingStorage(inner),
        "faults": FaultInjectingStorage(inner),
        "cache": CachingStorage(inner, tmp_path / "cache"),
        "delegating": DelegatingStorage(inner),
        "retry+faults": RetryingStorage(FaultInjectingStorage(inner)),
    }


@pytest.mark.parametrize("inner_kind", ["local", "memory", "fsspec"])
def test_wrappers_report_their_inner_stores_capabilities(tmp_path: Path, inner_kind: str
                                                          ) -> None:
    inner: Storage = {"local": lambda: LocalStorage(tmp_path / "repo"),
                      "memory": MemoryStorage, "fsspec": _fsspec}[inner_kind]()
    for name, wrapper in _wrappers(inner, tmp_path).items():
        assert wrapper.capabilities == inner.capabilities, name
        assert is_strongly_consistent(wrapper) is (inner_kind != "fsspec"), name
        assert io_workers(wrapper) == inner.capabilities.io_workers, name
        assert small_files_apart(wrapper, 2) is (inner_kind != "fsspec"), name


def test_retry_over_local_reports_locals_consistency(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path / "repo")
    assert RetryingStorage(local).capabilities is local.capabilities
    assert is_strongly_consistent(RetryingStorage(local))
    assert not is_strongly_consistent(RetryingStorage(_fsspec()))


def test_read_ahead_keeps_everything_but_native_reads_into_a_buffer(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path / "repo")
    caps = ReadAheadStorage(RetryingStorage(local)).capabilities
    assert caps == dataclasses.replace(local.capabilities, load_into=False)
    assert caps.strongly_consistent and caps.io_workers == LOCAL_WORKERS


@pytest.mark.parametrize("inner_kind", ["memory", "local"])
def test_read_ahead_serves_reads_into_a_buffer_from_its_windows(tmp_path: Path,
                                                                inner_kind: str) -> None:
    """Even over a store that reads into a buffer natively, read-ahead serves such reads
    from its windows."""
    backend = MemoryStorage() if inner_kind == "memory" else LocalStorage(tmp_path / "repo")
    counting = FaultInjectingStorage(backend)  # counts calls, injects nothing
    data = os.urandom(200_000)
    counting.save(_h(data), data)
    store = ReadAheadStorage(counting, window=100_000)
    buf = memoryview(bytearray(1000))
    before = counting.calls
    for off in range(0, 50_000, 1000):
        assert load_into(store, _h(data), off, buf) == 1000
        assert bytes(buf) == data[off:off + 1000]
    assert counting.calls - before == 1
    assert store.served == 49


def test_the_composed_stack_declares_what_its_backend_does(tmp_path: Path) -> None:
    stack = open_repository_storage(url=str(tmp_path / "repo"),
                                    faults={"failure_rate": 0.0})
    cached = with_cache(stack, "ab" * 32, cache_root=tmp_path / "cache")
    assert cached.capabilities == LocalStorage(tmp_path).capabilities
    ahead = open_repository_storage(backend=_fsspec(), read_ahead=True)
    assert ahead.capabilities == Capabilities.remote()


# ---- the delegating base ----------------------------------------------------------------

_SENTINEL_INFO = FileInfo("recorded", 7)


class Recorder:
    """A Storage that records each call and answers with a recognisable value."""

    def __init__(self, caps: Capabilities) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.capabilities = caps

    @property
    def location(self) -> str:
        return "recorder:1"

    def create_layout(self) -> None:
        self.calls.append(("create_layout",))

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("save", handle, bytes(data)))

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        self.calls.append(("load", handle, offset, length))
        return b"loaded"[:length]

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        self.calls.append(("load_into", handle, offset, len(buf)))
        buf[:4] = b"into"
        return 4

    def stat(self, handle: Handle) -> FileInfo:
        self.calls.append(("stat", handle))
        return _SENTINEL_INFO

    def exists(self, handle: Handle) -> bool:
        self.calls.append(("exists", handle))
        return True

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        self.calls.append(("list", file_type))
        return iter([_SENTINEL_INFO])

    def remove(self, handle: Handle) -> None:
        self.calls.append(("remove", handle))


def _protocol_members() -> set[str]:
    return {name for name in vars(Storage) if not name.startswith("_")}


def test_the_delegating_base_defines_every_protocol_member() -> None:
    members = _protocol_members()
    assert {"location", "capabilities", "save", "load", "load_into", "stat", "list",
            "remove", "exists", "create_layout"} <= members
    assert members <= set(vars(DelegatingStorage)), members - set(vars(DelegatingStorage))


def test_a_wrapper_that_adds_nothing_forwards_every_method() -> None:
    class Nothing(DelegatingStorage):
        pass

    caps = Capabilities(strongly_consistent=True, io_workers=3, load_into=True,
                        small_files_apart=False)
    inner = Recorder(caps)
    wrapper = Nothing(inner)
    assert isinstance(wrapper, Storage)
    h = Handle(FileType.INDEX, "ab" * 32)
    buf = memoryview(bytearray(10))
    assert wrapper.location == "recorder:1"
    assert wrapper.capabilities is caps
    wrapper.create_layout()
    wrapper.save(h, b"data")
    assert wrapper.load(h, 2, 3) == b"loa"
    assert wrapper.load_into(h, 5, buf) == 4 and bytes(buf[:4]) == b"into"
    assert wrapper.stat(h) is _SENTINEL_INFO
    assert wrapper.exists(h) is True
    assert list(wrapper.list(FileType.SNAPSHOT)) == [_SENTINEL_INFO]
    wrapper.remove(h)
    assert inner.calls == [
        ("create_layout",), ("save", h, b"data"), ("load", h, 2, 3), ("load_into", h, 5, 10),
        ("stat", h), ("exists", h), ("list", FileType.SNAPSHOT), ("remove", h)]
    assert io_workers(wrapper) == 3
    assert not small_files_apart(wrapper, 4)


def test_reads_into_a_buffer_follow_the_declaration() -> None:
    """A store that declares no native reads into a buffer is read with ``load`` and one
    copy, through any number of wrappers; one that declares them gets ``load_into``."""
    h = Handle(FileType.DATA, "cd" * 32)
    for native in (True, False):
        inner = Recorder(Capabilities(strongly_consistent=False, io_workers=8,
                                      load_into=native, small_files_apart=False))
        buf = memoryview(bytearray(6))
        n = load_into(DelegatingStorage(DelegatingStorage(inner)), h, 1, buf)
        if native:
            assert (n, bytes(buf[:n])) == (4, b"into")
            assert inner.calls == [("load_into", h, 1, 6)]
        else:
            assert (n, bytes(buf)) == (6, b"loaded")
            assert inner.calls == [("load", h, 1, 6)]


# ---- the helpers answer from the declaration, never from attributes ---------------------


class _DeclaresRemote(MemoryStorage):
    """Declares an object store's capabilities while carrying the attributes the helpers
    once probed (``strongly_consistent``, ``inner`` pointing at a local store)."""

    capabilities = Capabilities.remote()
    strongly_consistent = True

    def __init__(self, inner: Storage) -> None:
        super().__init__()
        self.inner = inner


def test_helpers_do_not_probe_attributes(tmp_path: Path) -> None:
    store = _DeclaresRemote(LocalStorage(tmp_path))
    assert not is_strongly_consistent(store)
    assert not is_strongly_consistent(RetryingStorage(store))
    assert io_workers(store) == 8
    assert not small_files_apart(store, 2)


def test_helpers_on_what_is_not_a_storage() -> None:
    assert not is_strongly_consistent(object())
    assert io_workers(object()) == 8
    assert not small_files_apart(object(), 4)
    assert not small_files_apart(MemoryStorage(), 1)
    assert small_files_apart(MemoryStorage(), 2)

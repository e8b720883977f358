"""Snapshot files: restic's JSON shape, round trips through the repository."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.errors import IntegrityError
from airflow_backup.jsontypes import JSONObject
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.snapshot import Snapshot, SnapshotSummary
from airflow_backup.repository.timefmt import format_ns
from airflow_backup.repository.unpacked import save_json
from airflow_backup.storage import FileType, Handle, MemoryStorage

ids = st.binary(min_size=32, max_size=32)
texts = st.text(max_size=15)
summaries = st.builds(
    SnapshotSummary,
    backup_start=st.just("2024-01-02T03:04:05.1Z"), backup_end=st.just("2024-01-02T03:05:00Z"),
    **{f: st.integers(0, 2**53) for f in (
        "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
        "dirs_unmodified", "data_blobs", "tree_blobs", "data_added", "data_added_packed",
        "total_files_processed", "total_bytes_processed")},
)
snapshots = st.builds(
    Snapshot,
    time=st.builds(format_ns, st.integers(0, 4_000_000_000 * 10**9),
                   st.integers(-840, 840).map(lambda m: m * 60)),
    tree=ids, paths=st.lists(texts, max_size=3), hostname=texts, username=texts,
    uid=st.integers(0, 2**32 - 1), gid=st.integers(0, 2**32 - 1),
    excludes=st.lists(texts, max_size=3), tags=st.lists(texts, max_size=3),
    parent=st.none() | ids, original=st.none() | ids, program_version=texts,
    summary=st.none() | summaries,
    # Go's int64 range: a larger integer is parsed as a float (gojson.loads documents it).
    extra=st.dictionaries(st.sampled_from(["airflow", "x_custom"]),
                          st.integers(-2**63, 2**63 - 1), max_size=2),
)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def repo() -> Repository:
    return Repository.init(MemoryStorage(), "pw")


@settings(max_examples=60, deadline=None)
@given(snap=snapshots)
def test_snapshot_round_trip(repo: Repository, snap: Snapshot) -> None:
    json.dumps(snap.to_json())  # JSON-serialisable as it stands
    snap_id = repo.save_snapshot(snap)
    assert snap.id == snap_id
    assert repo.load_snapshot(snap_id) == snap


def test_snapshot_with_backslash_paths_round_trips(repo: Repository) -> None:
    snap = Snapshot(time="2024-01-02T03:04:05Z", tree=b"\x01" * 32, paths=["C:\\backup"])
    assert repo.load_snapshot(repo.save_snapshot(snap)).paths == ["C:\\backup"]


def test_json_fields_in_go_order() -> None:
    snap = Snapshot(time="2024-01-02T03:04:05Z", tree=b"\x01" * 32, paths=["/data"],
                    hostname="h", username="u", uid=1, gid=2, excludes=["*.tmp"], tags=["t"],
                    parent=b"\x02" * 32, original=b"\x03" * 32, program_version="x 1.0",
                    summary=SnapshotSummary(files_new=3), extra={"airflow": {"dag": "d"}})
    obj = snap.to_json()
    assert list(obj) == ["time", "parent", "tree", "paths", "hostname", "username", "uid",
                         "gid", "excludes", "tags", "original", "program_version", "summary",
                         "airflow"]
    assert obj["tree"] == "01" * 32 and obj["parent"] == "02" * 32
    assert list(obj["summary"])[:3] == ["backup_start", "backup_end", "files_new"]
    assert Snapshot.from_json(obj) == snap


def test_omitempty_fields_are_omitted() -> None:
    obj = Snapshot(time="2024-01-02T03:04:05Z", tree=b"\x01" * 32, paths=[]).to_json()
    assert list(obj) == ["time", "tree", "paths", "hostname", "username", "uid", "gid"]


def test_restic_snapshot_with_unknown_summary_keys_parses() -> None:
    obj = {"time": "2024-01-02T03:04:05.123456789+01:00", "tree": "aa" * 32,
           "paths": ["/home"], "hostname": "h", "username": "u", "uid": 0, "gid": 0,
           "summary": {"files_new": 2, "new_in_restic_0_99": 1}}
    snap = Snapshot.from_json(obj, "ff" * 32)
    assert snap.summary == SnapshotSummary(files_new=2)
    assert snap.time_ns == 1_704_161_045_123_456_789
    assert snap.short_id == "ffffffff"


def test_null_summary_values_are_ignored_as_in_go() -> None:
    obj: JSONObject = {"time": "2024-01-02T03:04:05Z", "tree": "aa" * 32,
                       "summary": {"files_new": None, "backup_start": None, "data_blobs": 4}}
    assert Snapshot.from_json(obj).summary == SnapshotSummary(data_blobs=4)


@pytest.mark.parametrize("field", [
    {"tree": 5}, {"paths": "/home"}, {"paths": [1]}, {"tags": "t"}, {"excludes": [None]},
    {"uid": [0]}, {"gid": {"a": 1}}, {"parent": 1}, {"original": ["aa"]},
    {"summary": {"files_new": "2"}}, {"summary": {"backup_end": 0}},
])
def test_fields_of_the_wrong_json_type_make_a_malformed_snapshot(field: dict[str, object]
                                                                 ) -> None:
    """restic's decoder refuses a field of the wrong type; so do we, rather than carry it."""
    storage = MemoryStorage()
    r = Repository.init(storage, "pw")
    obj = {"time": "2024-01-02T03:04:05Z", "tree": "aa" * 32, "paths": ["/"], **field}
    snap_id = save_json(storage, r.key, FileType.SNAPSHOT, obj, 2)
    with pytest.raises(IntegrityError, match=f"snapshots/{snap_id}: malformed snapshot"):
        r.load_snapshot(snap_id)


def test_snapshots_are_listed_oldest_first() -> None:
    storage = MemoryStorage()
    r = Repository.init(storage, "pw")
    for t in ["2024-01-03T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-02T05:00:00+06:00"]:
        r.save_snapshot(Snapshot(time=t, tree=b"\x01" * 32, paths=["/"]))
    assert [s.time for s in r.list_snapshots()] == [
        "2024-01-01T00:00:00Z", "2024-01-02T05:00:00+06:00", "2024-01-03T00:00:00Z"]


def test_tampered_snapshot_is_reported_by_id() -> None:
    storage = MemoryStorage()
    r = Repository.init(storage, "pw")
    snap_id = r.save_snapshot(Snapshot(time="2024-01-01T00:00:00Z", tree=b"\x01" * 32,
                                       paths=["/"]))
    handle = Handle(FileType.SNAPSHOT, snap_id)
    storage.corrupt(handle, flip_bit(storage.load(handle), 300))
    with pytest.raises(IntegrityError, match=snap_id):
        r.load_snapshot(snap_id)


def test_malformed_snapshot_json_is_an_integrity_error() -> None:
    storage = MemoryStorage()
    r = Repository.init(storage, "pw")
    snap_id = save_json(storage, r.key, FileType.SNAPSHOT, {"paths": []}, 2)
    with pytest.raises(IntegrityError, match=f"snapshots/{snap_id}: malformed snapshot"):
        r.load_snapshot(snap_id)

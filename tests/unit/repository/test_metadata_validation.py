"""Every decoded metadata document (snapshot, index, key file, master key, config) is validated
before use: whatever a field holds — wrong JSON types, extreme or negative numbers, claimed
lengths of 2^40, empty or overlong strings, lone surrogates, NaN, nesting thousands of levels
deep — decoding succeeds with values that are safe to use, or raises IntegrityError. No other
exception escapes, and nothing is allocated in proportion to a claimed length."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_backup.cli.commands.common import snapshot_json, snapshot_rows
from airflow_backup.errors import IntegrityError
from airflow_backup.repository import gojson, keys
from airflow_backup.repository.config import CONFIG_HANDLE, load_config
from airflow_backup.repository.crypto import EXTENSION, Key
from airflow_backup.repository.kdf import MAX_MEM, KdfParams
from airflow_backup.repository.packs import BlobType
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.unpacked import encode_unpacked
from airflow_backup.storage import FileType, Handle, MemoryStorage

H1, H2, H3 = "a1" * 32, "b2" * 32, "c3" * 32
TINY = KdfParams(2, 1, 1)  # scrypt's cheapest: these tests derive a key per example
PEAK_LIMIT = 32 << 20  # far below any claimed length tried here (2^32 and more)


class Deep:
    """A value nested ``levels`` arrays deep, written as raw JSON (Python's encoder could not
    write it)."""

    def __init__(self, levels: int) -> None:
        self.levels = levels


def to_json_bytes(doc: Any) -> bytes:
    """Encode ``doc`` as JSON; Deep markers become that many brackets, NaN stays ``NaN`` and a
    lone surrogate an escape (both make orjson refuse the document: the fallback parses)."""
    deep: dict[str, int] = {}

    def default(value: object) -> str:
        assert isinstance(value, Deep)
        marker = f"@@deep{len(deep)}@@"
        deep[marker] = value.levels
        return marker

    text = json.dumps(doc, default=default)
    for marker, levels in deep.items():
        text = text.replace(f'"{marker}"', "[" * levels + "]" * levels)
    return text.encode()


NASTY_INTS = [-1, -(2**31), -(2**63), 0, 1, 2, 31, 32, 2**31 - 1, 2**32 - 1, 2**32, 2**40,
              2**63 - 1, 2**64 - 1, 2**64, 10**30]
NASTY_STRINGS = ["", "x" * 100_000, "data", "tree", "scrypt", H1, H1.upper(), "0" * 63,
                 H1[:-2] + " 1", "zz" * 32, "\u0663" * 64, "2024-01-02T03:04:05Z",
                 " 2024-01-02T03:04:05Z", "yesterday", "0001-01-01T00:00:00+01:00",
                 "9999-12-31T23:59:59-01:00", "2024-01-02T03:04:05+99:00", "\ud800",
                 "3da3358b4dc173", "-1", "0x10", "+5", "1_0", "AAAA", "====", "not base64!"]
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NASTY_INTS), st.integers(),
    st.floats(), st.sampled_from(NASTY_STRINGS), st.text(max_size=20),
    st.builds(Deep, st.sampled_from([2, 64, 65, 1000, 1100, 100_000])),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NASTY_STRINGS[:8]), inner,
                                                 max_size=3)), max_leaves=6)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Yield the path of every value in ``doc`` (the document itself is ``()``)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*prefix, i))


def mutate(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    """Return ``doc`` with the value at ``path`` replaced by ``value``, deleted, or with an
    unknown key ``x_extra`` added beside it."""
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent["x_extra"] = value
    else:
        parent[last] = value
    return doc


def mutated(base: Callable[[], Any]) -> st.SearchStrategy[Any]:
    """Documents made from ``base()`` by one to four replacements, deletions or additions."""
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        doc = base()
        for _ in range(draw(st.integers(1, 4))):
            all_paths = list(paths(doc))
            path = draw(st.sampled_from(all_paths))
            action = draw(st.sampled_from(["set", "set", "delete", "add"]))
            if action == "delete" and not path:
                action = "set"
            value = draw(values)
            with contextlib.suppress(KeyError, IndexError, TypeError):  # path already gone
                doc = mutate(doc, path, action, value)
        return doc
    return build()


def snapshot_doc() -> dict[str, Any]:
    return {"time": "2024-01-02T03:04:05.123456789+01:00", "parent": H1, "tree": H2,
            "paths": ["/data", "/etc"], "hostname": "h", "username": "u", "uid": 1000,
            "gid": 1000, "excludes": ["*.tmp"], "tags": ["daily"], "original": H3,
            "program_version": "restic 0.16.0",
            "summary": {"backup_start": "2024-01-02T03:04:05Z",
                        "backup_end": "2024-01-02T03:05:05Z", "files_new": 3,
                        "data_added": 4096, "total_bytes_processed": 5000},
            "airflow_backup": {"source": {"kind": "files", "rows": [1, 2]}}}


def index_doc() -> dict[str, Any]:
    return {"supersedes": [H3], "packs": [
        {"id": H1, "blobs": [
            {"id": H2, "type": "data", "offset": 0, "length": 100},
            {"id": H3, "type": "data", "offset": 100, "length": 60,
             "uncompressed_length": 500}]},
        {"id": H3, "blobs": [{"id": H1, "type": "tree", "offset": 0, "length": 90}]}]}


SALT = bytes(range(64))
USER_KEY = keys.derive("pw", SALT, TINY)


def master_doc() -> dict[str, Any]:
    return Key(b"\x01" * 32, b"\x02" * 16, b"\x03" * 16).to_json()


def key_doc(master: bytes | None = None) -> dict[str, Any]:
    sealed = USER_KEY.seal(master if master is not None else json.dumps(master_doc()).encode())
    return {"created": "2024-01-02T03:04:05.5+02:00", "username": "u", "hostname": "h",
            "kdf": "scrypt", "N": TINY.n, "r": TINY.r, "p": TINY.p,
            "salt": base64.b64encode(SALT).decode(), "data": base64.b64encode(sealed).decode()}


def config_doc() -> dict[str, Any]:
    return {"version": 2, "id": H1, "chunker_polynomial": "3da3358b4dc173"}


@pytest.fixture(scope="module")
def repo() -> Repository:
    return Repository.init(MemoryStorage(), "pw", kdf=TINY)


def bounded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; return its result, or None if it raised IntegrityError (any other exception
    fails the test). Assert that it allocated little at its peak."""
    tracemalloc.start()
    try:
        return fn()
    except IntegrityError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400, message
        assert exc.retryable is False
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < PEAK_LIMIT, peak


def store(repo: Repository, file_type: FileType, raw: bytes) -> str:
    sealed = encode_unpacked(repo.key, raw, 2)
    name = hashlib.sha256(sealed).hexdigest()
    repo.storage.save(Handle(file_type, name), sealed)
    return name


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(doc=mutated(snapshot_doc))
def test_snapshot_documents_decode_or_are_integrity_errors(repo: Repository, doc: Any) -> None:
    name = store(repo, FileType.SNAPSHOT, to_json_bytes(doc))
    try:
        sn = bounded(lambda: repo.load_snapshot(name))
        listed = repo.list_snapshots()
        if sn is None:
            assert name in repo.damaged_snapshots and name not in {s.id for s in listed}
            return
        assert [s.id for s in listed] == [name]
        # What commands do with a snapshot works on every snapshot that decodes.
        assert sn.time_ns == sn.time_ns
        assert 0 <= sn.uid < 2**32 and 0 <= sn.gid < 2**32
        assert {len(i) for i in (sn.tree, sn.parent or sn.tree, sn.original or sn.tree)} == {32}
        gojson.dumps(sn.to_json())
        json.dumps(snapshot_json(sn), ensure_ascii=False, allow_nan=False).encode()
        "".join(c for row in snapshot_rows([sn])[1] for c in row).encode()
    finally:
        repo.storage.remove(Handle(FileType.SNAPSHOT, name))


@FUZZ
@given(doc=mutated(index_doc) | mutated(lambda: index_doc()["packs"]))
def test_index_documents_decode_or_are_integrity_errors(repo: Repository, doc: Any) -> None:
    name = store(repo, FileType.INDEX, to_json_bytes(doc))
    try:
        fresh = Repository(repo.storage, repo.key, repo.key_id, repo.config)
        if bounded(lambda: fresh.load_index() or True) is None:
            with pytest.raises(IntegrityError, match=f"index/{name}: "):
                fresh.load_index_file(name)
            return
        fresh.index.finalize()  # into the compact uint32 records
        for entry in fresh.index.entries():
            b = entry.blob
            assert len(entry.pack_id) == len(b.id) == 32
            assert 0 <= b.offset < 2**32 and EXTENSION <= b.length < 2**32
            assert 0 <= b.uncompressed_length < 2**32
            # Reading it fails cleanly (its pack does not exist), with no allocation of the
            # claimed length.
            assert bounded(lambda b=b: fresh.load_blob(b.type, b.id)) is None
        assert bounded(lambda: fresh.load_index_file(name)) is not None
    finally:
        repo.storage.remove(Handle(FileType.INDEX, name))


def _open_key(storage: MemoryStorage, raw: bytes) -> Key | None:
    name = hashlib.sha256(raw).hexdigest()
    storage.save(Handle(FileType.KEY, name), raw)
    kf = keys.load_key_file(storage, name)
    n, r, p = kf.params
    assert 128 * r * n <= MAX_MEM and len(kf.data) >= EXTENSION
    if n * r * p > 1 << 12:
        return None  # valid, but too costly to derive here
    return keys.open_key_file(kf, "pw")


@FUZZ
@given(doc=mutated(key_doc))
def test_key_files_decode_or_are_integrity_errors(doc: Any) -> None:
    bounded(lambda: _open_key(MemoryStorage(), to_json_bytes(doc)))


@FUZZ
@given(doc=mutated(master_doc))
def test_master_keys_decode_or_are_integrity_errors(doc: Any) -> None:
    raw = json.dumps(key_doc(to_json_bytes(doc))).encode()
    key = bounded(lambda: _open_key(MemoryStorage(), raw))
    assert key is None or (len(key.encrypt), len(key.mac_k), len(key.mac_r)) == (32, 16, 16)


@FUZZ
@given(doc=mutated(config_doc))
def test_config_documents_decode_or_are_integrity_errors(doc: Any) -> None:
    storage, key = MemoryStorage(), Key.random()
    storage.save(CONFIG_HANDLE, key.seal(to_json_bytes(doc)))
    config = bounded(lambda: load_config(storage, key))
    if config is not None:
        assert config.version in (1, 2) and len(bytes.fromhex(config.id)) == 32


@pytest.mark.parametrize(("kind", "raw", "message"), [
    ("snapshot", b'{"time":"2024-01-02T03:04:05Z","tree":"' + H2.encode() + b'","uid":-5}',
     "malformed snapshot: uid: a number -5 is out of range 0..4294967295"),
    ("snapshot", b'{"time":"yesterday","tree":"' + H2.encode() + b'"}',
     "malformed snapshot: time: not an RFC 3339 time: a string 'yesterday'"),
    ("snapshot", b'"just a string"',
     "malformed snapshot: must be an object, not a string 'just a string'"),
    ("snapshot", b'{"time":"2024-01-02T03:04:05Z","tree":"' + H2.encode()
     + b'","summary":{"files_new":"3"}}',
     "malformed snapshot: summary.files_new: must be an integer, not a string '3'"),
    ("snapshot", b'{"time":"2024-01-02T03:04:05Z","tree":"' + H2.encode() + b'","x":'
     + b"[" * 100 + b"]" * 100 + b"}", "malformed snapshot: x: nested deeper than 64 levels"),
    ("index", b'{"packs":[{"id":"' + H1.encode() + b'","blobs":[{"id":"' + H2.encode()
     + b'","type":"data","offset":0,"length":1099511627776}]}]}',
     "malformed index: packs[0].blobs[0].length: a number 1099511627776 is out of range "
     "32..4294967295"),
    ("index", b'{"packs":["' + H1.encode() + b'"]}',
     f"malformed index: packs[0]: must be an object, not a string '{H1[:31]}…"),
    ("index", b'{"packs":[{"id":"' + H1.encode() + b'","blobs":[{"id":"' + H2.encode()
     + b'","type":"data","offset":"0","length":40}]}]}',
     "malformed index: packs[0].blobs[0].offset: must be an integer, not a string '0'"),
    ("index", b"[" * 5000 + b"]" * 5000, "invalid JSON"),
])
def test_messages_name_the_file_and_the_field(repo: Repository, kind: str, raw: bytes,
                                              message: str) -> None:
    file_type = FileType.SNAPSHOT if kind == "snapshot" else FileType.INDEX
    name = store(repo, file_type, raw)
    try:
        load = repo.load_snapshot if kind == "snapshot" else repo.load_index_file
        with pytest.raises(IntegrityError) as caught:
            load(name)
        assert str(caught.value) == f"{file_type.value}/{name}: {message}"
    finally:
        repo.storage.remove(Handle(file_type, name))


def test_key_file_messages_name_the_file_and_the_field() -> None:
    storage = MemoryStorage()
    doc = key_doc()
    doc["N"] = 2.5
    raw = json.dumps(doc).encode()
    name = hashlib.sha256(raw).hexdigest()
    storage.save(Handle(FileType.KEY, name), raw)
    with pytest.raises(IntegrityError) as caught:
        keys.load_key_file(storage, name)
    assert str(caught.value) == \
        f"keys/{name}: malformed key file: N: must be an integer, not a number 2.5"


def test_a_key_that_opens_but_holds_no_master_key_is_named() -> None:
    storage = MemoryStorage()
    raw = json.dumps(key_doc(b'{"mac":{"k":"AAAA","r":"AAAA"},"encrypt":""}')).encode()
    name = hashlib.sha256(raw).hexdigest()
    storage.save(Handle(FileType.KEY, name), raw)
    with pytest.raises(IntegrityError) as caught:
        keys.find_key(storage, "pw")
    assert str(caught.value) == (f"keys/{name}: malformed master key: data.mac.k: must be 16 "
                                 "bytes, not 3")


def test_lone_surrogates_read_as_go_reads_them(repo: Repository) -> None:
    raw = (b'{"time":"2024-01-02T03:04:05Z","tree":"' + H2.encode()
           + b'","hostname":"h\\ud800","x":{"k\\udc00":["\\ud83d\\ude00"]}}')
    sn = repo.load_snapshot(store(repo, FileType.SNAPSHOT, raw))
    assert sn.hostname == "h\ufffd"
    assert sn.extra == {"x": {"k\ufffd": ["\U0001f600"]}}
    gojson.dumps(sn.to_json())


def test_decoded_index_entries_load_as_blob_types(repo: Repository) -> None:
    raw = to_json_bytes(index_doc())
    name = store(repo, FileType.INDEX, raw)
    try:
        packs = repo.load_index_file(name)
        assert {b.type for blobs in packs.values() for b in blobs} == {BlobType.DATA,
                                                                      BlobType.TREE}
    finally:
        repo.storage.remove(Handle(FileType.INDEX, name))


def test_a_field_path_with_control_characters_or_of_any_length_is_one_short_line() -> None:
    from airflow_backup.repository.gojson import FieldError

    message = str(FieldError("x_extra." + "k\n" * 5000, "inf is not a JSON number"))
    assert "\n" not in message and len(message) < 200
    assert message.startswith("x_extra.k\\nk") and message.endswith(": inf is not a JSON number")

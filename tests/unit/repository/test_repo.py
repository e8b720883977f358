"""Keys and the repository: init/open, passwords, several keys, blob storage and checks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from airflow_backup.errors import (
    ConfigError,
    IntegrityError,
    RepositoryNotFound,
    WrongPassword,
)
from airflow_backup.repository import keys
from airflow_backup.repository.config import CONFIG_HANDLE
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packs import BlobType, read_pack_header
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.tree import Node
from airflow_backup.storage import FileType, Handle, LocalStorage, MemoryStorage


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def only(storage: MemoryStorage, file_type: FileType) -> str:
    [info] = storage.list(file_type)
    return info.name


# ---- init, open, passwords ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_init_then_open(tmp_path: Path, kind: str) -> None:
    storage = MemoryStorage() if kind == "memory" else LocalStorage(tmp_path / "repo")
    repo = Repository.init(storage, "correct horse")
    opened = Repository.open(storage, "correct horse")
    assert opened.key == repo.key
    assert opened.key_id == repo.key_id
    assert opened.config == repo.config and opened.version == 2


def test_wrong_password(storage: MemoryStorage) -> None:
    Repository.init(storage, "right")
    with pytest.raises(WrongPassword):
        Repository.open(storage, "wrong")
    with pytest.raises(WrongPassword):
        Repository.open(storage, "Right")


def test_open_of_empty_storage(tmp_path: Path, storage: MemoryStorage) -> None:
    with pytest.raises(RepositoryNotFound):
        Repository.open(storage, "pw")
    with pytest.raises(RepositoryNotFound):
        Repository.open(LocalStorage(tmp_path), "pw")
    with pytest.raises(RepositoryNotFound):
        Repository.open(LocalStorage(tmp_path / "does-not-exist"), "pw")


def test_init_refuses_an_existing_repository_and_bad_versions(storage: MemoryStorage) -> None:
    Repository.init(storage, "pw")
    with pytest.raises(ConfigError):
        Repository.init(storage, "pw")
    with pytest.raises(ConfigError):
        Repository.init(MemoryStorage(), "pw", version=3)


def test_two_keys_open_the_same_repository(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "first")
    second = keys.add_key(storage, repo.key, "second", username="bob", hostname="box")
    assert second != repo.key_id
    assert {i.name for i in storage.list(FileType.KEY)} == {repo.key_id, second}
    a = Repository.open(storage, "first")
    b = Repository.open(storage, "second")
    assert a.key == b.key == repo.key
    assert (a.key_id, b.key_id) == (repo.key_id, second)
    assert Repository.open(storage, "second", key_hint=second[:8]).key_id == second
    with pytest.raises(WrongPassword):
        Repository.open(storage, "third")


def test_key_file_format_is_restics(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    raw = storage.load(Handle(FileType.KEY, repo.key_id))
    assert hashlib.sha256(raw).hexdigest() == repo.key_id
    obj = json.loads(raw)
    assert list(obj) == ["created", "username", "hostname", "kdf", "N", "r", "p", "salt",
                         "data"]
    assert obj["kdf"] == "scrypt"
    assert (obj["N"], obj["r"], obj["p"]) == (1024, 8, 1)  # from AIRFLOW_BACKUP_KDF_PARAMS
    salt = base64.b64decode(obj["salt"])
    assert len(salt) == 64
    # Unwrap the master key independently: scrypt → (AES key, K, R) → IV‖CT‖MAC.
    derived = hashlib.scrypt(b"pw", salt=salt, n=obj["N"], r=obj["r"], p=obj["p"], dklen=64)
    sealed = base64.b64decode(obj["data"])
    plain = Key(derived[:32], derived[32:48], derived[48:]).open(sealed)
    ctr = Cipher(algorithms.AES(derived[:32]), modes.CTR(sealed[:16])).decryptor()
    assert ctr.update(sealed[16:-16]) + ctr.finalize() == plain
    assert Key.from_json(json.loads(plain)) == repo.key


def test_key_files_with_explicit_params_are_honoured(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw", kdf=keys.KdfParams(2048, 4, 2))
    kf = keys.load_key_file(storage, repo.key_id)
    assert kf.params == keys.KdfParams(2048, 4, 2)
    assert keys.open_key_file(kf, "pw") == repo.key
    assert keys.open_key_file(kf, "nope") is None


def test_calibrate_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_BACKUP_KDF_PARAMS", "4096,8,3")
    assert keys.calibrate() == keys.KdfParams(4096, 8, 3)
    for bad in ("1000,8,1", "1024,8", "a,b,c", "1024,0,1"):
        monkeypatch.setenv("AIRFLOW_BACKUP_KDF_PARAMS", bad)
        with pytest.raises(ConfigError):
            keys.calibrate()


def test_key_file_with_another_kdf_is_skipped(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    obj = json.loads(storage.load(Handle(FileType.KEY, repo.key_id)))
    obj["kdf"] = "argon2"
    raw = json.dumps(obj).encode()
    name = hashlib.sha256(raw).hexdigest()
    storage.save(Handle(FileType.KEY, name), raw)
    with pytest.raises(IntegrityError, match="unsupported KDF"):
        keys.load_key_file(storage, name)
    assert Repository.open(storage, "pw", key_hint=name[:6]).key_id == repo.key_id


def test_garbage_key_file_does_not_hide_the_good_one(storage: MemoryStorage) -> None:
    Repository.init(storage, "pw")
    storage.save(Handle(FileType.KEY, "00" * 32), b"{not json")
    storage.save(Handle(FileType.KEY, "01" * 32), b'{"kdf":"scrypt"}')
    assert Repository.open(storage, "pw", key_hint="00").key is not None
    with pytest.raises(WrongPassword):
        Repository.open(storage, "wrong")


def test_key_file_with_invalid_scrypt_params_is_skipped(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    obj = json.loads(storage.load(Handle(FileType.KEY, repo.key_id)))
    obj["N"] = 1000
    raw = json.dumps(obj).encode()
    storage.save(Handle(FileType.KEY, hashlib.sha256(raw).hexdigest()), raw)
    with pytest.raises(WrongPassword):
        Repository.open(storage, "wrong")


# ---- blobs ----------------------------------------------------------------------------


def test_save_and_load_blobs(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    data = os.urandom(5000) + b"z" * 5000
    blob_id, added = repo.save_blob(BlobType.DATA, data)
    assert blob_id == hashlib.sha256(data).digest() and added > 0
    tree_id, _ = repo.save_tree([Node(name=b"f", type="file", content=[blob_id], size=10000)])
    repo.flush()
    other = Repository.open(storage, "pw")
    other.load_index()
    assert other.load_blob(BlobType.DATA, blob_id) == data
    [node] = other.load_tree(tree_id)
    assert node.content == [blob_id]
    # Data and tree blobs live in separate packs.
    packs = [i.name for i in storage.list(FileType.DATA)]
    assert len(packs) == 2
    types = [{b.type for b in read_pack_header(storage.load(Handle(FileType.DATA, p)),
                                               repo.key, p)} for p in packs]
    assert sorted(len(t) for t in types) == [1, 1] and types[0] != types[1]


def test_saving_a_blob_twice_stores_it_once(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    first = repo.save_blob(BlobType.DATA, b"same bytes" * 50)
    again = repo.save_blob(BlobType.DATA, b"same bytes" * 50)  # still in the open pack
    assert again == (first[0], 0)
    repo.flush()
    assert repo.save_blob(BlobType.DATA, b"same bytes" * 50) == (first[0], 0)  # indexed
    repo.flush()
    pack = only(storage, FileType.DATA)
    assert len(read_pack_header(storage.load(Handle(FileType.DATA, pack)), repo.key, pack)) == 1
    assert len(list(storage.list(FileType.INDEX))) == 1
    # Another session that loaded the index also skips it.
    other = Repository.open(storage, "pw")
    other.load_index()
    assert other.save_blob(BlobType.DATA, b"same bytes" * 50) == (first[0], 0)
    # The same bytes as a tree blob are a different blob.
    assert repo.save_blob(BlobType.TREE, b"same bytes" * 50)[1] > 0


def _repo_with_one_blob(storage: MemoryStorage, data: bytes) -> tuple[Repository, bytes, str]:
    repo = Repository.init(storage, "pw")
    repo.compress_data = False
    blob_id, _ = repo.save_blob(BlobType.DATA, data)
    repo.flush()
    return repo, blob_id, only(storage, FileType.DATA)


def test_bit_flip_in_a_pack_is_detected_and_names_the_pack(storage: MemoryStorage) -> None:
    data = os.urandom(200)
    _, blob_id, pack = _repo_with_one_blob(storage, data)
    handle = Handle(FileType.DATA, pack)
    good = storage.load(handle)
    for bit in (0, 16 * 8 + 3, 100 * 8, (16 + 200) * 8 + 7):  # IV, CT, CT, MAC
        storage.corrupt(handle, flip_bit(good, bit))
        fresh = Repository.open(storage, "pw")
        fresh.load_index()
        with pytest.raises(IntegrityError, match=f"pack {pack}"):
            fresh.load_blob(BlobType.DATA, blob_id)
    storage.corrupt(handle, good)
    fresh = Repository.open(storage, "pw")
    fresh.load_index()
    assert fresh.load_blob(BlobType.DATA, blob_id) == data


def test_load_blob_checks_sha256_behind_a_valid_mac(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    claimed = hashlib.sha256(b"what the index promises").digest()
    repo.save_blob(BlobType.DATA, b"something else entirely", blob_id=claimed)
    repo.flush()
    pack = only(storage, FileType.DATA)
    with pytest.raises(IntegrityError, match=f"pack {pack}.*does not match its id"):
        repo.load_blob(BlobType.DATA, claimed)


def test_compressed_blob_with_wrong_uncompressed_length(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    blob_id, _ = repo.save_blob(BlobType.TREE, b'{"nodes":[]}\n')
    repo.flush()
    entry = repo.index.lookup(BlobType.TREE, blob_id)
    assert entry is not None and entry.blob.compressed
    pack = entry.pack_id.hex()
    sealed = storage.load(Handle(FileType.DATA, pack), entry.blob.offset, entry.blob.length)
    lying = replace(entry.blob, uncompressed_length=entry.blob.uncompressed_length + 1)
    with pytest.raises(IntegrityError, match="uncompressed length"):
        repo.decode_blob(pack, lying, sealed)
    with pytest.raises(IntegrityError, match="truncated"):
        repo.decode_blob(pack, entry.blob, sealed[:-1])


def test_missing_pack_and_unindexed_blob(storage: MemoryStorage) -> None:
    repo, blob_id, pack = _repo_with_one_blob(storage, b"data")
    storage.remove(Handle(FileType.DATA, pack))
    with pytest.raises(IntegrityError, match=f"pack {pack} is missing"):
        repo.load_blob(BlobType.DATA, blob_id)
    with pytest.raises(IntegrityError, match="not in the index"):
        repo.load_blob(BlobType.DATA, b"\x00" * 32)


def test_v1_repository_stores_nothing_compressed(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw", version=1)
    blob_id, _ = repo.save_blob(BlobType.DATA, b"a" * 10000)
    repo.flush()
    entry = repo.index.lookup(BlobType.DATA, blob_id)
    assert entry is not None and not entry.blob.compressed
    assert repo.key.open(storage.load(Handle(FileType.INDEX, only(storage, FileType.INDEX))))[:1] \
        == b"{"
    assert Repository.open(storage, "pw").version == 1
    assert repo.key.open(storage.load(CONFIG_HANDLE)).startswith(b'{"version":1,')


def test_resolve_id_by_prefix(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, "pw")
    second = keys.add_key(storage, repo.key, "other")
    assert repo.resolve_id(FileType.KEY, second[:10]) == second
    with pytest.raises(ConfigError, match="no key matches"):
        repo.resolve_id(FileType.KEY, "zz")
    with pytest.raises(ConfigError, match="ambiguous"):
        repo.resolve_id(FileType.KEY, "")


def test_decoding_into_scratch_gives_the_same_plaintext_and_the_same_checks(
    storage: MemoryStorage,
) -> None:
    """Restore and check decrypt (and decompress large blobs) into reused per-thread
    buffers: same bytes as decoding afresh, for small and large, compressed and stored
    blobs, and damage is still caught."""
    from airflow_backup.errors import IntegrityError
    from airflow_backup.repository.scratch import scratch

    repo = Repository.init(storage, "pw")
    blobs = [b"text " * 5000, b"large text " * 60_000, os.urandom(70_000),
             os.urandom(300_000), b""]
    for b in blobs:
        repo.save_blob(BlobType.DATA, b)
    repo.flush()
    for plain in blobs:
        entry = repo.index.lookup(BlobType.DATA, hashlib.sha256(plain).digest())
        assert entry is not None
        pack = entry.pack_id.hex()
        sealed = storage.load(Handle(FileType.DATA, pack), entry.blob.offset, entry.blob.length)
        got = repo.decode_blob_into(pack, entry.blob, sealed)
        assert bytes(got) == plain == repo.decode_blob(pack, entry.blob, sealed)
        if plain:
            bad = bytearray(sealed)
            bad[len(bad) // 2] ^= 1
            with pytest.raises(IntegrityError):
                repo.decode_blob_into(pack, entry.blob, bytes(bad))
    assert len(scratch(3 << 20)) >= 3 << 20  # grows on demand

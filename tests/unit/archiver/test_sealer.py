"""Small files sealed by a worker: what comes back opens with the repository key to the
file's bytes, and every file gets its own outcome."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from airflow_backup.archiver.chunker import MIN_SIZE
from airflow_backup.archiver.sealer import Sealed, small_file_sealer
from airflow_backup.repository.repo import Repository
from airflow_backup.repository.unpacked import decompress
from airflow_backup.storage.memory import MemoryStorage


@pytest.mark.parametrize("compress", [True, False])
def test_a_batch_comes_back_sealed_in_order(tmp_path: Path, compress: bool) -> None:
    key = Repository.init(MemoryStorage(), "pw").key
    text = b"log line 42\n" * 500
    noise = os.urandom(3000)
    files = {"text": text, "noise": noise, "empty": b"", "grown": os.urandom(MIN_SIZE + 10)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir").mkdir()
    batch = [(os.fsencode(tmp_path / n), len(files[n]) if n != "grown" else 100) for n in files]
    batch += [(os.fsencode(tmp_path / "gone"), 10), (os.fsencode(tmp_path / "dir"), 4096)]

    reply = small_file_sealer(key, compress)(batch)

    text_blob, noise_blob, empty, grown, gone, directory = reply
    for got, data in ((text_blob, text), (noise_blob, noise)):
        assert isinstance(got, Sealed)
        assert got.blob_id == hashlib.sha256(data).digest() and got.size == len(data)
        payload = key.open(got.sealed)
        if got.uncompressed_length:
            assert got.uncompressed_length == len(data)
            payload = decompress(payload, "test")
        assert payload == data
    assert isinstance(text_blob, Sealed) and isinstance(noise_blob, Sealed)
    # Compressed only where that helps, as the pack writer decides.
    assert (text_blob.uncompressed_length != 0) == compress
    assert noise_blob.uncompressed_length == 0
    assert empty == ()
    assert grown is None  # larger than one chunk now: the caller chunks it
    assert isinstance(gone, FileNotFoundError)
    assert isinstance(directory, OSError)

"""Turn batches of small files into sealed blobs, in a forked worker process.

A small file (below the chunker's minimum) is one blob. The worker does everything a blob
needs that does not touch the repository: read, SHA-256, zstd, AES-CTR and Poly1305 with
the repository's key. The parent then only copies the sealed bytes into a pack, checks for
duplicates and indexes the blob (``Repository.save_sealed_blob``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

import zstandard

from airflow_backup.archiver.chunker import MIN_SIZE
from airflow_backup.archiver.reading import read_small_files
from airflow_backup.repository.crypto import Key
from airflow_backup.repository.packer import blob_payload, new_compressor
from airflow_backup.repository.packs import BlobType

__all__ = ["Sealed", "SealedReply", "small_file_sealer"]


class Sealed(NamedTuple):
    """One small file as a sealed data blob: its id, ``IV ‖ CT ‖ MAC``, the uncompressed
    length to index (0 if stored uncompressed) and the file's size."""

    blob_id: bytes
    sealed: bytes
    uncompressed_length: int
    size: int


# Per file, in order: Sealed; () for an empty file; None if it grew to a chunk or more
# since it was listed (the caller chunks it); or the OSError that stopped it.
SealedReply = list[Sealed | tuple[()] | OSError | None]


def small_file_sealer(key: Key, compress: bool
                      ) -> Callable[[list[tuple[bytes, int]]], SealedReply]:
    """Given the repository's key and whether data blobs are compressed, return the function
    a worker runs on a batch of (path, lstat size) (read as :func:`read_small_files` does)."""
    comp: zstandard.ZstdCompressor | None = None  # made in the worker: a few MiB

    def seal(batch: list[tuple[bytes, int]]) -> SealedReply:
        nonlocal comp
        reply: SealedReply = []
        for data in read_small_files(batch):
            if isinstance(data, OSError):
                reply.append(data)
            elif len(data) >= MIN_SIZE:
                reply.append(None)
            elif not data:
                reply.append(())
            else:
                payload: bytes | memoryview = data
                ulen = 0
                if compress:
                    comp = comp or new_compressor()
                    payload, ulen = blob_payload(comp, data, BlobType.DATA)
                reply.append(Sealed(hashlib.sha256(data).digest(), key.seal(payload),
                                    ulen, len(data)))
        return reply

    return seal

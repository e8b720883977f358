"""Turn batches of small files into sealed blobs, in a forked worker process.

A small file (below the chunker's minimum) is one blob. The worker does everything a blob
needs that does not touch the repository: read, SHA-256, zstd, AES-CTR and Poly1305 with
the repository's key. The parent then only copies the sealed bytes into a pack, checks for
duplicates and indexes the blob (``Repository.save_sealed_blob``).
"""

from __future__ import annotations

import hashlib
import os
import stat as st
from collections.abc import Callable
from typing import NamedTuple

import zstandard

from airflow_backup.archiver.chunker import MIN_SIZE
from airflow_backup.archiver.reading import open_ahead, read_small
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
    a worker runs on a batch of (path, lstat size): it opens the whole batch first and asks
    the kernel to read it all at once, so that with a cold cache the files wait for the disk
    together rather than one after another."""
    # Made in the worker, on first use (a zstd context takes a few MiB).
    compressors: list[zstandard.ZstdCompressor] = []

    def seal(batch: list[tuple[bytes, int]]) -> SealedReply:
        if compress and not compressors:
            compressors.append(new_compressor())
        reply: SealedReply = []
        fds = [open_ahead(path) for path, _ in batch]
        try:
            for (path, size), fd in zip(batch, fds, strict=True):
                if isinstance(fd, OSError):
                    reply.append(fd)
                    continue
                try:
                    if not st.S_ISREG(os.fstat(fd).st_mode):
                        raise OSError(f"{os.fsdecode(path)} changed type while being read")
                    data = read_small(fd, size)
                except OSError as exc:
                    reply.append(exc)
                    continue
                if len(data) >= MIN_SIZE:
                    reply.append(None)
                elif not data:
                    reply.append(())
                else:
                    payload, ulen = (blob_payload(compressors[0], data, BlobType.DATA)
                                     if compress else (data, 0))
                    reply.append(Sealed(hashlib.sha256(data).digest(), key.seal(payload),
                                        ulen, len(data)))
        finally:
            for fd in fds:
                if isinstance(fd, int):
                    os.close(fd)
        return reply

    return seal

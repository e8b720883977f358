"""A Google Cloud Storage emulator (the PyPI package gcp-storage-emulator, pure Python) on
127.0.0.1, serving GCS's JSON API in memory.

The emulator runs through :func:`serve`, which makes it store multipart uploads byte for byte
(see :func:`split_related`): as released, it drops the last byte of an object that ends in CR.

Nothing in here imports ``airflow_backup``.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Sequence
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from support.emulators import EmulatorProcess, missing
from support.moto import free_port

__all__ = ["GcsEmulator", "serve", "split_related"]

_TESTS = Path(__file__).resolve().parent.parent


def _argv() -> list[str]:
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError:
        missing("the GCS emulator (PyPI package gcp-storage-emulator) is not installed")
    launch = (f"import sys; sys.path.insert(0, {str(_TESTS)!r}); "
              "from support.gcs_emulator import serve; serve(sys.argv[1:])")
    return [sys.executable, "-c", launch]


def split_related(body: bytes, content_type: str) -> dict[str, Any]:
    """Given a ``multipart/related`` upload (JSON metadata, then the content), return what
    the emulator's upload handler takes: ``meta``, ``content`` (exactly the bytes sent) and
    ``content-type``. Raise ValueError if it is malformed.

    The emulator parses these with the email package, which treats CR LF before a boundary
    as the line break that belongs to the boundary (RFC 2046) and drops both. gcsfs breaks
    its lines, that one too, with a bare LF: content ending in CR (a sealed repository file,
    one in 256) lost its last byte. Here the line break before every boundary is the one the
    first boundary line ends with."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        raise ValueError(f"multipart upload without a boundary: {content_type!r}")
    delimiter = b"--" + boundary.encode()
    start = body.index(delimiter) + len(delimiter)  # anything before it is preamble
    eol = b"\r\n" if body.startswith(b"\r\n", start) else b"\n"
    parts: list[tuple[str, bytes]] = []
    for piece in body[start:].split(eol + delimiter):
        if piece.startswith(b"--"):  # the closing boundary
            break
        if not piece.startswith(eol):
            raise ValueError("multipart upload: a boundary line with trailing text")
        part = piece[len(eol):]
        if part.startswith(eol):  # no header fields
            head, content = b"", part[len(eol):]
        else:
            head, sep, content = part.partition(eol + eol)
            if not sep:
                raise ValueError("multipart upload: a part without a blank line")
        parts.append((BytesHeaderParser().parsebytes(head).get_content_type(), content))
    if len(parts) != 2:
        raise ValueError(f"multipart upload of {len(parts)} parts, not 2")
    return {"meta": json.loads(parts[0][1]), "content": parts[1][1],
            "content-type": parts[1][0]}


def serve(args: Sequence[str]) -> None:
    """Run the emulator's command line with ``args`` (in the emulator's own process), its
    ``multipart/related`` uploads parsed by :func:`split_related`."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.__main__ import main

    read_data = server._read_data

    def read_uploads_exactly(handler: Any, query: dict[str, list[str]]) -> Any:
        content_type = handler.headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/related"):
            return read_data(handler, query)
        raw = server._decode_raw_data(server._read_raw_data(handler), handler)
        return split_related(raw, content_type) if raw else None

    server._read_data = read_uploads_exactly
    main(list(args))


class GcsEmulator(EmulatorProcess):
    """A running GCS emulator; ``endpoint`` is what STORAGE_EMULATOR_HOST would say."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "gcp-storage-emulator",
            [*_argv(), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
             "--quiet"],
            f"http://127.0.0.1:{port}", cwd=workdir, log_path=workdir / "gcs-emulator.log")

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=test", method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30):
            pass
        return name

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Return the names of the bucket's objects under ``prefix``."""
        url = f"{self.endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            return [o["name"] for o in json.load(reply).get("items", [])]

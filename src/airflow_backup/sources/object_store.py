"""Object-store prefixes (fsspec URLs such as ``s3://bucket/prefix``): objects become a tree.

Each object ``prefix/a/b.txt`` is stored as the file ``objects/a/b.txt``; its ETag, mtime,
SHA-256 and (on S3) its headers — Content-Type, Content-Encoding, Cache-Control,
Content-Disposition, Content-Language — and user metadata ride along in the tree node, and
are written back on restore. A key that is not a valid path (``a/b/`` holding data, ``a//b``)
is stored under a path with that segment escaped (``a/b/%``, ``a/%/b``; ``.`` and ``..`` as
``%2E`` and ``%2E%2E``) and its real key in the node. An object whose size and ETag (or
mtime, where the store has no ETag) match the previous backup of the same URL is not
downloaded again: its node, and so its stored content, is reused. Query parameters:
``endpoint_url=…`` (S3-compatible stores), ``region=…``. Credentials come from the store's
usual environment (``AWS_*`` …). Restore writes to the same or another prefix and reads
every object back to compare SHA-256 (and the recorded headers).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, ClassVar, cast

import fsspec
import fsspec.asyn

from airflow_backup.errors import ConfigError, RestoreTargetExists, SourceError, SourceUnavailable
from airflow_backup.jsontypes import JSONObject, JSONValue
from airflow_backup.repository.tree import Node
from airflow_backup.sources.base import (
    ExportSink,
    RestoreReport,
    SnapshotReader,
    SourceRestoreOptions,
    SourceURL,
    StoredExport,
    TableCheck,
)
from airflow_backup.sources.metadata import ExportFacts, SourceDescription, ValidationFacts

__all__ = ["ObjectStoreSource"]

_META = "airflow_backup_object"
#: The S3 headers an object keeps (as head_object names them; put_object takes the same).
_HEADERS = ("ContentType", "ContentEncoding", "CacheControl", "ContentDisposition",
            "ContentLanguage")
_ESCAPED = {"": "%", ".": "%2E", "..": "%2E%2E"}


def _stored_path(key: str) -> str:
    """Return the tree path (below ``objects/``) that stores the object ``key``."""
    return "/".join(_ESCAPED.get(part, part) for part in key.split("/"))


@dataclass(frozen=True, slots=True)
class _ObjectVersion:
    """One listed object: its size, ETag and modification time (as text)."""

    size: int
    etag: str
    mtime: str

    @classmethod
    def from_info(cls, info: Mapping[str, object]) -> _ObjectVersion:
        """Read an fsspec listing entry (S3 gives ``ETag``/``LastModified``, others less)."""
        size = info.get("size")
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        mtime = info.get("LastModified") or info.get("mtime") or info.get("created") or ""
        return cls(int(size) if isinstance(size, int | float | str) and size else 0, etag,
                   str(mtime.isoformat()) if hasattr(mtime, "isoformat") else str(mtime))

    def same_as(self, stored: JSONValue) -> bool:
        """Return whether ``stored`` (a node's recorded version) is this version: same size
        and ETag, or same mtime where the store has no ETag."""
        return isinstance(stored, dict) and stored.get("size") == self.size and (
            stored.get("etag") == self.etag if self.etag
            else stored.get("mtime") == self.mtime)

    def recorded(self, sha256: str, key: str, headers: JSONObject | None) -> JSONObject:
        """Return what a stored node records about this version (the key only where the
        path escapes it; the headers where the store has them)."""
        out: JSONObject = {"size": self.size, "etag": self.etag, "mtime": self.mtime,
                           "sha256": sha256}
        if _stored_path(key) != key:
            out["key"] = key
        if headers is not None:
            out["headers"] = headers
        return out


class ObjectStoreSource:
    """A prefix in an fsspec-supported object store; see the module docstring."""

    kind: ClassVar[str] = "object_store"
    #: The URL query options this source reads; any other is an error (a typo must not
    #: silently change what is backed up, or where from).
    options: ClassVar[frozenset[str]] = frozenset(("endpoint_url", "region"))

    def __init__(self, url: SourceURL) -> None:
        self.url = url
        self.root = (url.host + url.path).strip("/")
        if not self.root:
            raise ConfigError(f"{url.scheme}:// URLs need a bucket: {url.scheme}://bucket/prefix")
        options: dict[str, object] = {"skip_instance_cache": True}
        client: dict[str, str] = {}
        if url.param("endpoint_url"):
            client["endpoint_url"] = url.param("endpoint_url")
        if url.param("region"):
            client["region_name"] = url.param("region")
        if client and url.scheme == "s3":
            options["client_kwargs"] = client
        try:
            self.fs = fsspec.filesystem(url.scheme, **options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{url.scheme}:// needs its fsspec driver: {exc}") from None
        self._listing: dict[str, _ObjectVersion] = {}

    def _list(self, root: str) -> dict[str, _ObjectVersion]:
        """Return ``{relative key: version}`` for the objects below ``root``."""
        try:
            self.fs.invalidate_cache()
            found: Mapping[str, Mapping[str, object]] = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SourceUnavailable(f"object store {self.url.redacted()}: {message}") from None
        out = {}
        for path, info in found.items():
            # The memory filesystem answers "/bucket/key"; object stores "bucket/key".
            bare = path.lstrip("/") if not path.startswith("/" + root) else path[1:]
            if not bare.startswith(root + "/") or info.get("type") == "directory":
                continue
            out[bare[len(root) + 1:]] = _ObjectVersion.from_info(info)
        stored: dict[str, str] = {}
        for key in out:
            clash = stored.setdefault(_stored_path(key), key)
            if clash != key:
                raise SourceError(f"object keys {clash!r} and {key!r} would be stored as the "
                                  "same path")
        return out

    def _s3_key(self, key: str) -> tuple[str, str]:
        bucket, _, prefix = self.root.partition("/")
        return bucket, f"{prefix}/{key}" if prefix else key

    def _open_read(self, key: str, size: int | None = None) -> BinaryIO:
        """Open the object ``key`` for reading. The S3 driver cuts a trailing '/' off a
        key, so such an object (a folder marker, sometimes with data) is fetched whole."""
        if key.endswith("/") and self.url.scheme == "s3":
            bucket, full = self._s3_key(key)

            async def fetch() -> bytes:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=full)
                async with resp["Body"] as body:
                    return bytes(await body.read())

            try:
                return io.BytesIO(fsspec.asyn.sync(self.fs.loop, fetch))
            except OSError as exc:  # s3fs maps NoSuchKey to FileNotFoundError
                raise FileNotFoundError(key) from exc
        return cast(BinaryIO, self.fs.open(f"{self.root}/{key}", "rb", size=size))

    def _write(self, key: str, reader: SnapshotReader, path: str,
               extra: dict[str, object]) -> None:
        """Write the stored file ``path`` as the object ``key`` with the given headers."""
        if key.endswith("/") and self.url.scheme == "s3":
            buffer = io.BytesIO()
            reader.copy_to(path, buffer)
            bucket, full = self._s3_key(key)
            self.fs.call_s3("put_object", Bucket=bucket, Key=full, Body=buffer.getvalue(),
                            **extra)
            return
        with self.fs.open(f"{self.root}/{key}", "wb", **extra) as out:
            reader.copy_to(path, cast(BinaryIO, out))

    def _remove(self, keys: list[str]) -> None:
        """Delete the objects ``keys`` (on S3 by exact key: the driver would cut a trailing
        '/' off)."""
        if self.url.scheme != "s3":
            self.fs.rm([f"{self.root}/{k}" for k in keys])
            return
        for start in range(0, len(keys), 1000):  # the most one DeleteObjects call takes
            batch = [self._s3_key(k) for k in keys[start:start + 1000]]
            self.fs.call_s3("delete_objects", Bucket=batch[0][0],
                            Delete={"Objects": [{"Key": full} for _, full in batch],
                                    "Quiet": True})

    def _headers(self, key: str) -> JSONObject | None:
        """Return the S3 headers and user metadata of ``key`` (None on other stores)."""
        if self.url.scheme != "s3":
            return None
        bucket, full = self._s3_key(key)
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=full)
        out: JSONObject = {h: str(head[h]) for h in _HEADERS if head.get(h)}
        out["Metadata"] = {str(k): str(v) for k, v in (head.get("Metadata") or {}).items()}
        return out

    # ---- backup --------------------------------------------------------------------------

    def probe(self) -> SourceDescription:
        """Ask the store about the bucket once (endpoint, credentials and bucket work);
        list nothing."""
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.invalidate_cache()
            self.fs.info(bucket)
        except FileNotFoundError:
            raise SourceUnavailable(f"object store {self.url.redacted()}: no such bucket "
                                    f"{bucket!r}") from None
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SourceUnavailable(f"object store {self.url.redacted()}: {message}") from None
        return {"databases": [self.root]}

    def describe(self) -> SourceDescription:
        """List the prefix; record how many objects and bytes it holds."""
        self._listing = self._list(self.root)
        return {"databases": [self.root], "objects": len(self._listing),
                "bytes": sum(v.size for v in self._listing.values()),
                "tool_version": f"fsspec {fsspec.__version__}"}

    def export(self, sink: ExportSink, previous: StoredExport | None) -> ExportFacts:
        """Store new and changed objects; reuse unchanged ones from ``previous``."""
        old: dict[str, Node] = {}
        if previous is not None:
            old = {_node_key(p, n): n for p, n in previous.reader.nodes("objects")}
        downloaded = reused = 0
        for key in sorted(self._listing):
            version = self._listing[key]
            path = "objects/" + _stored_path(key)
            prev = old.get(key)
            if prev is not None and version.same_as(prev.extra.get(_META)):
                sink.add_node(path, prev)
                reused += 1
                continue
            try:
                headers = self._headers(key)
                # The size is known: the driver need not ask the store for it again.
                with self._open_read(key, size=version.size) as f:
                    sink.add_stream(path, f)
            except FileNotFoundError:
                continue  # deleted since the listing
            sink.node(path).extra[_META] = version.recorded(sink.digest(path), key, headers)
            downloaded += 1
        if not self._listing:
            raise SourceError(f"object store {self.url.redacted()}: no objects below the prefix")
        return {"downloaded": downloaded, "reused": reused}

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Check the stored tree lists every object with its size."""
        nodes = dict(reader.nodes("objects"))
        paths = {k: "objects/" + _stored_path(k) for k in self._listing}
        missing = [k for k, p in paths.items() if p not in nodes]
        wrong = [k for k, p in paths.items() if p in nodes
                 and nodes[p].size != self._listing[k].size]
        if missing or wrong:
            raise SourceError(f"stored tree of {self.url.redacted()} is incomplete: "
                              f"{len(missing)} missing, {len(wrong)} with the wrong size")
        return {"objects": len(nodes)}

    # ---- restore -------------------------------------------------------------------------

    def restore(self, stored: StoredExport, history: list[StoredExport],
                options: SourceRestoreOptions) -> RestoreReport:
        """Write every object below the target prefix, then read each back and compare."""
        nodes = dict(stored.reader.nodes("objects"))
        existing = self._list(self.root)
        if existing and not (options.clean or options.force):
            raise RestoreTargetExists(f"{self.url.redacted()} already holds {len(existing)} "
                                      "object(s): pass --clean to empty it or --force to "
                                      "overwrite matching keys")
        if existing and options.clean:
            self._remove(sorted(existing))
        expected = 0
        keys = {path: _node_key(path, node) for path, node in nodes.items()}
        for path, node in sorted(nodes.items()):
            key = keys[path]
            # Headers go (and are compared) where the target keeps them: S3, not memory://.
            headers = _node_headers(node) if self.url.scheme == "s3" else None
            extra: dict[str, object] = {}
            if headers is not None:
                extra = {h: v for h, v in headers.items() if h in _HEADERS}
                extra["Metadata"] = headers.get("Metadata") or {}
            self._write(key, stored.reader, path, extra)
            expected = (expected + _part(key, _node_sha(node), headers)) % (1 << 64)
        got = present = 0
        for path, node in sorted(nodes.items()):
            key = keys[path]
            sha = hashlib.sha256()
            try:
                with self._open_read(key) as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        sha.update(block)
            except FileNotFoundError:
                continue
            present += 1
            # The headers are compared only where the backup recorded them.
            headers = (self._headers(key) if self.url.scheme == "s3"
                       and _node_headers(node) is not None else None)
            got = (got + _part(key, sha.hexdigest(), headers)) % (1 << 64)
        # Into an empty (or cleaned) prefix, nothing but the restored objects may be there.
        count = len(self._list(self.root)) if options.clean or not existing else present
        check = TableCheck("objects", len(nodes), f"objsum:{expected:016x}", count,
                           f"objsum:{got:016x}")
        return RestoreReport(self.url.redacted(), [check], {"objects": len(nodes)})

    def cleanup(self) -> None:
        """Nothing to remove: objects are streamed, never staged."""


def _node_meta(node: Node) -> JSONObject:
    meta = node.extra.get(_META)
    return meta if isinstance(meta, dict) else {}


def _node_sha(node: Node) -> str:
    return str(_node_meta(node).get("sha256", ""))


def _node_key(path: str, node: Node) -> str:
    """Return the object key a stored node holds (its path, unless escaped)."""
    key = _node_meta(node).get("key")
    return key if isinstance(key, str) else path[len("objects/"):]


def _node_headers(node: Node) -> JSONObject | None:
    headers = _node_meta(node).get("headers")
    return headers if isinstance(headers, dict) else None


def _part(key: str, sha: str, headers: JSONObject | None = None) -> int:
    text = f"{key}\0{sha}" + ("" if headers is None else
                               "\0" + json.dumps(headers, sort_keys=True))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")

"""Object-store prefixes (fsspec URLs such as ``s3://bucket/prefix``): objects become a tree.

Each object ``prefix/a/b.txt`` is stored as the file ``objects/a/b.txt``; its ETag, mtime and
SHA-256 ride along in the tree node. An object whose size and ETag (or mtime, where the store
has no ETag) match the previous backup of the same URL is not downloaded again: its node,
and so its stored content, is reused. Query parameters: ``endpoint_url=…`` (S3-compatible
stores), ``region=…``. Credentials come from the store's usual environment (``AWS_*`` …).
Restore writes to the same or another prefix and reads every object back to compare SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, ClassVar, cast

import fsspec

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

    def recorded(self, sha256: str) -> JSONObject:
        """Return what a stored node records about this version."""
        return {"size": self.size, "etag": self.etag, "mtime": self.mtime, "sha256": sha256}


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
            bare = path.lstrip("/")
            rel = bare[len(root):].strip("/") if bare.startswith(root) else ""
            if not rel or path.endswith("/") or info.get("type") == "directory":
                continue
            if any(p in ("", ".", "..") for p in rel.split("/")):
                raise SourceError(f"object key {path!r} cannot be stored as a path")
            out[rel] = _ObjectVersion.from_info(info)
        return out

    # ---- backup --------------------------------------------------------------------------

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
            old = {p[len("objects/"):]: n for p, n in previous.reader.nodes("objects")}
        downloaded = reused = 0
        for rel in sorted(self._listing):
            version = self._listing[rel]
            prev = old.get(rel)
            if prev is not None and version.same_as(prev.extra.get(_META)):
                sink.add_node(f"objects/{rel}", prev)
                reused += 1
                continue
            path = f"objects/{rel}"
            try:
                with self.fs.open(f"{self.root}/{rel}", "rb") as f:
                    sink.add_stream(path, cast(BinaryIO, f))
            except FileNotFoundError:
                continue  # deleted since the listing
            sink.node(path).extra[_META] = version.recorded(sink.digest(path))
            downloaded += 1
        if not self._listing:
            raise SourceError(f"object store {self.url.redacted()}: no objects below the prefix")
        return {"downloaded": downloaded, "reused": reused}

    def validate(self, reader: SnapshotReader) -> ValidationFacts:
        """Check the stored tree lists every object with its size."""
        nodes = dict(reader.nodes("objects"))
        missing = [r for r in self._listing if f"objects/{r}" not in nodes]
        wrong = [r for r in self._listing if f"objects/{r}" in nodes
                 and nodes[f"objects/{r}"].size != self._listing[r].size]
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
            self.fs.rm([f"{self.root}/{r}" for r in existing])
        expected = 0
        for path, node in sorted(nodes.items()):
            rel = path[len("objects/"):]
            with self.fs.open(f"{self.root}/{rel}", "wb") as out:
                stored.reader.copy_to(path, cast(BinaryIO, out))
            expected = (expected + _part(rel, _node_sha(node))) % (1 << 64)
        got = present = 0
        for path in sorted(nodes):
            rel = path[len("objects/"):]
            sha = hashlib.sha256()
            try:
                with self.fs.open(f"{self.root}/{rel}", "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        sha.update(block)
            except FileNotFoundError:
                continue
            present += 1
            got = (got + _part(rel, sha.hexdigest())) % (1 << 64)
        # Into an empty (or cleaned) prefix, nothing but the restored objects may be there.
        count = len(self._list(self.root)) if options.clean or not existing else present
        check = TableCheck("objects", len(nodes), f"objsum:{expected:016x}", count,
                           f"objsum:{got:016x}")
        return RestoreReport(self.url.redacted(), [check], {"objects": len(nodes)})

    def cleanup(self) -> None:
        """Nothing to remove: objects are streamed, never staged."""


def _node_sha(node: Node) -> str:
    meta = node.extra.get(_META)
    return str(meta.get("sha256", "")) if isinstance(meta, dict) else ""


def _part(rel: str, sha: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{rel}\0{sha}".encode()).digest()[:8], "big")

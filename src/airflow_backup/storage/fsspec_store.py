"""A storage backend over any fsspec filesystem (S3, GCS, Azure, SFTP, …) in restic's layout.

The repository lives under ``root`` (``bucket/prefix`` for object stores) with restic's file
names, so ``restic -r s3:https://host/bucket/prefix`` opens what this backend writes. The
filesystem is built by :mod:`airflow_backup.storage.registry` from a URL, or handed over
already built by code (the Airflow provider builds one from a connection).

Every exception of fsspec, s3fs, botocore, aiohttp, … is mapped here, at the boundary, to the
storage errors of :mod:`airflow_backup.errors` (see :func:`map_error`). Messages name the
operation, the file and the service's error code; never a credential.

This backend never retries: :mod:`airflow_backup.storage.retry` does, in one place. Object
stores write whole objects atomically; for filesystems that do not (``atomic_writes=False``,
e.g. SFTP) a save goes to ``tmp/`` first and is then moved into place. On S3 a save that must
not overwrite is a conditional PUT, so that of two concurrent creates exactly one wins; on
other stores it is an existence check followed by the write (not atomic).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import secrets
from collections.abc import Iterator
from typing import Any

from airflow_backup.errors import NotFound, PermanentStorageError, TransientStorageError
from airflow_backup.storage.base import (
    Capabilities,
    FileInfo,
    FileType,
    Handle,
    load_by_copy,
    object_path,
)

__all__ = ["FsspecStorage", "map_error"]

# A streamed read (S3) hands its bytes over in chunks of about this size: each is one hop
# from the caller's thread to s3fs's event loop and back, so not much smaller; and a blob
# is decoded only once its last chunk is in, so not much larger.
_STREAM_CHUNK = 1 << 20

# Service error codes (S3 and S3-compatible, GCS and Azure use similar words).
_TRANSIENT_CODES = {
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
    "TooManyRequests", "TooManyRequestsException", "ServiceUnavailable", "InternalError",
    "InternalServerError", "ServerBusy", "OperationTimedOut", "RequestLimitExceeded",
    "PriorRequestNotComplete", "BandwidthLimitExceeded", "EC2ThrottledException",
    "IDPCommunicationError", "OperationAborted",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket", "ContainerNotFound", "BucketNotFound"}
_TRANSIENT_ERRNOS = {
    errno.EBUSY, errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
    errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH,
    errno.ENETDOWN, errno.ENETRESET, getattr(errno, "EREMOTEIO", errno.EIO),
}
# Exception class names (anywhere in the cause chain) that mean "the network hiccuped".
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
    "ConnectTimeoutError", "ResponseStreamingError", "IncompleteReadError", "HTTPClientError",
    "ProxyConnectionError", "ClientPayloadError", "ServerDisconnectedError",
    "ClientConnectorError", "ClientOSError", "ServerTimeoutError", "FSTimeoutError",
    "IncompleteRead", "ResponseParserError", "ChannelException", "ConnectionLost",
    "ServiceRequestError", "ServiceResponseError",
}
_PERMANENT_NAMES = {
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
    "ClientAuthenticationError", "DefaultCredentialsError", "RefreshError",
    "PermissionDenied", "ProfileNotFound", "InvalidConfigError",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _service_error(exc: BaseException) -> tuple[str, int]:
    """Return (error code, HTTP status) from a botocore-style ``response`` or an Azure SDK
    error (``error_code``, ``status_code``) in the chain."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            err = response.get("Error") or {}
            meta = response.get("ResponseMetadata") or {}
            code = str(err.get("Code", "")) if isinstance(err, dict) else ""
            status = meta.get("HTTPStatusCode", 0) if isinstance(meta, dict) else 0
            return code, int(status or 0)
        azure_code = getattr(e, "error_code", None)  # azure.core's HttpResponseError
        if azure_code:
            azure_status = getattr(e, "status_code", None)
            return (str(getattr(azure_code, "value", azure_code)),
                    azure_status if isinstance(azure_status, int) else 0)
        status = getattr(e, "status", None) or getattr(e, "code", None)
        if isinstance(status, int) and 100 <= status < 600:
            return "", status
    return "", 0


def map_error(exc: BaseException, what: str) -> Exception:
    """Given any exception from an fsspec filesystem during ``what``, return ours.

    Missing bucket or container, authentication, permissions, no space and invalid requests
    are permanent; timeouts, throttling, 5xx and connection resets are transient; a missing
    key is NotFound. Anything unrecognised is permanent (fail fast and loudly).
    """
    if isinstance(exc, NotFound | TransientStorageError | PermanentStorageError):
        return exc
    code, status = _service_error(exc)
    names = {type(e).__name__ for e in _chain(exc)}
    label = code or (f"HTTP {status}" if status else type(exc).__name__)
    if code in _MISSING_BUCKET_CODES:
        return PermanentStorageError(f"{what}: the bucket or container does not exist ({code})")
    if isinstance(exc, FileExistsError) or code == "PreconditionFailed":
        return PermanentStorageError(f"{what}: already exists")
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404", "BlobNotFound"):
        return NotFound(f"{what}: not found")
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientStorageError(f"{what}: {label}")
    if names & _PERMANENT_NAMES:
        return PermanentStorageError(f"{what}: no usable credentials ({label})")
    if isinstance(exc, PermissionError) or status in (401, 403):
        return PermanentStorageError(f"{what}: access denied ({label})")
    if names & _TRANSIENT_NAMES or isinstance(exc, TimeoutError | ConnectionError):
        return TransientStorageError(f"{what}: connection problem ({label})")
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return TransientStorageError(f"{what}: {label} ({errno.errorcode.get(exc.errno or 0, '')})")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return PermanentStorageError(f"{what}: no space left")
    return PermanentStorageError(f"{what}: {label}")


class FsspecStorage:
    """A repository at ``root`` on the fsspec filesystem ``fs``.

    ``location`` is what users see in messages (a URL without credentials). ``atomic_writes``
    says whether ``pipe_file`` replaces a file atomically (true for object stores).
    """

    #: New files may show late (object stores, network file systems); reads are copies.
    capabilities = Capabilities.remote()

    def __init__(self, fs: Any, root: str, *, location: str | None = None,
                 atomic_writes: bool = True) -> None:
        self._fs = fs
        self._root = root.rstrip("/")
        self._location = location or f"{_protocol(fs)}://{self._root}"
        self._atomic = atomic_writes
        # S3 (and S3-compatible servers that implement it) refuse a PUT with If-None-Match:*
        # when the key exists; other stores get an existence check before the write.
        self._conditional = atomic_writes and _protocol(fs) in ("s3", "s3a")
        # s3fs asks for an object's size (a HEAD) before every whole-object GET unless told
        # to fetch it in one part: one round trip per metadata file saved. Our whole-file
        # loads are small files (config, keys, locks, index, snapshots, tree packs).
        self._whole_kw: dict[str, Any] = (
            {"max_concurrency": 1}
            if _protocol(fs) in ("s3", "s3a") and _takes(fs, "_cat_file", "max_concurrency")
            else {})
        # s3fs's find() follows an empty listing with a HEAD and a second LIST (to tell a
        # file from a directory): listing S3 prefixes directly makes it one request.
        self._direct_list = (_protocol(fs) in ("s3", "s3a")
                             and _takes(fs, "_lsdir", "delimiter")
                             and getattr(fs, "loop", None) is not None)
        # s3fs can hand a GET's body over as it arrives (its async get_object call);
        # other filesystems serve load_chunks with one load.
        self._streams = (_protocol(fs) in ("s3", "s3a")
                         and callable(getattr(fs, "_call_s3", None))
                         and callable(getattr(fs, "split_path", None))
                         and getattr(fs, "loop", None) is not None)

    @property
    def location(self) -> str:
        """Return the repository URL without credentials."""
        return self._location

    @property
    def fs(self) -> Any:
        """Return the underlying fsspec filesystem."""
        return self._fs

    def _path(self, handle: Handle) -> str:
        return f"{self._root}/{object_path(handle)}"

    def create_layout(self) -> None:
        """Create the root and restic's directories where the filesystem has directories."""
        try:
            if not self._atomic:
                for d in ("data", "index", "keys", "locks", "snapshots", "tmp"):
                    self._fs.makedirs(f"{self._root}/{d}", exist_ok=True)
                for i in range(256):
                    self._fs.makedirs(f"{self._root}/data/{i:02x}", exist_ok=True)
            else:
                # Object stores have no directories; this fails early on a missing bucket.
                self._fs.ls(self._root.split("/", 1)[0], detail=False)
        except FileNotFoundError as exc:
            mapped = map_error(exc, f"create repository at {self._location}")
            if not isinstance(mapped, NotFound):
                raise mapped from exc
        except Exception as exc:
            raise map_error(exc, f"create repository at {self._location}") from exc

    def save(self, handle: Handle, data: bytes | bytearray | memoryview) -> None:
        """Store the file; refuse to overwrite anything but a lock (PermanentStorageError)."""
        what = f"save {object_path(handle)}"
        path = self._path(handle)
        exclusive = handle.type is not FileType.LOCK
        if exclusive and not self._conditional and self.exists(handle):
            raise PermanentStorageError(f"{what}: already exists")
        try:
            if self._atomic and exclusive and self._conditional:
                # A conditional PUT (If-None-Match: *): of concurrent creates, one wins.
                self._fs.pipe_file(path, bytes(data), mode="create")
            elif self._atomic:
                self._fs.pipe_file(path, bytes(data))
            else:
                tmp = f"{self._root}/tmp/{handle.name}-{secrets.token_hex(6)}"
                self._fs.pipe_file(tmp, bytes(data))
                self._fs.mv(tmp, path)
        except Exception as exc:
            raise map_error(exc, what) from exc

    def load(self, handle: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Return a byte range of the file. Raise NotFound if it is missing."""
        what = f"load {object_path(handle)}"
        if length == 0:
            self.stat(handle)
            return b""
        end = None if length is None else offset + length
        whole = offset == 0 and end is None
        try:
            data = self._fs.cat_file(self._path(handle), start=offset or None, end=end,
                                     **(self._whole_kw if whole else {}))
        except Exception as exc:
            code, _ = _service_error(exc)
            if code == "InvalidRange":  # offset at or past the end: an empty read
                return b""
            raise map_error(exc, what) from exc
        return bytes(data)

    def load_chunks(self, handle: Handle, offset: int, length: int) -> Iterator[bytes]:
        """Yield ``length`` bytes from ``offset`` in chunks of about 1 MiB as they arrive
        (see :meth:`~airflow_backup.storage.base.ChunkedReads.load_chunks`): on S3 one
        ranged GET whose body is read chunk by chunk; elsewhere one :meth:`load`. Raise
        NotFound if the file is missing; a body that breaks or ends short of its length
        raises TransientStorageError, never yields what it got of that chunk."""
        if not self._streams or length <= 0:
            data = self.load(handle, offset, length)
            if data:
                yield data
            return
        from fsspec.asyn import sync

        what = f"load {object_path(handle)}"
        fs = self._fs
        bucket, key, _ = fs.split_path(self._path(handle))
        try:
            resp = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key,
                        Range=f"bytes={offset}-{offset + length - 1}")
        except Exception as exc:
            code, _ = _service_error(exc)
            if code == "InvalidRange":  # offset at or past the end: an empty read
                return
            raise map_error(exc, what) from exc
        body = resp["Body"]
        size = resp.get("ContentLength")
        # Past the end of the object S3 answers with what there is (a short read).
        left = min(length, int(size)) if isinstance(size, int) else length
        try:
            while left > 0:
                want = min(_STREAM_CHUNK, left)
                try:
                    data = sync(fs.loop, _read_up_to, body, want)
                except Exception as exc:
                    raise map_error(exc, what) from exc
                if len(data) < want:
                    raise TransientStorageError(
                        f"{what}: the response ended {left - len(data)} bytes short")
                left -= want
                yield data
        finally:
            # Read to its end, the connection is back in the pool already; else (the
            # caller stopped, or the body broke) it is closed, never reused half-read.
            with contextlib.suppress(Exception):
                sync(fs.loop, _close_body, body)

    def load_into(self, handle: Handle, offset: int, buf: memoryview) -> int:
        """Copy a byte range into ``buf`` (through :meth:`load`); return how many bytes.
        Raise NotFound if the file is missing."""
        return load_by_copy(self, handle, offset, buf)

    def stat(self, handle: Handle) -> FileInfo:
        """Return the file's size. Raise NotFound if it is missing."""
        try:
            info = self._fs.info(self._path(handle))
        except Exception as exc:
            raise map_error(exc, f"stat {object_path(handle)}") from exc
        if info.get("type") == "directory":
            raise NotFound(f"stat {object_path(handle)}: not found")
        return FileInfo(handle.name, int(info.get("size") or 0))

    def exists(self, handle: Handle) -> bool:
        """Return whether the file exists."""
        try:
            self.stat(handle)
        except NotFound:
            return False
        return True

    def leftover_temporaries(self, older_than: float) -> tuple[str, ...]:
        """Return nothing: every save here is one atomic put, nothing temporary is left."""
        return ()

    def remove_temporary(self, path: str) -> None:
        """Nothing to remove (see :meth:`leftover_temporaries`)."""
        raise NotFound(f"no temporary file {path}")

    def list(self, file_type: FileType) -> Iterator[FileInfo]:
        """Yield every file of the type (temp files and directory markers are skipped)."""
        if file_type is FileType.CONFIG:
            try:
                yield self.stat(Handle(FileType.CONFIG, "config"))
            except NotFound:
                return
            return
        base = f"{self._root}/{file_type.value}"
        try:
            found = _list_s3(self._fs, base) if self._direct_list else self._fs.find(
                base, detail=True, withdirs=False)
        except FileNotFoundError as exc:
            mapped = map_error(exc, f"list {file_type.value}")
            if isinstance(mapped, NotFound):
                return
            raise mapped from exc
        except Exception as exc:
            raise map_error(exc, f"list {file_type.value}") from exc
        items = found.values() if isinstance(found, dict) else found
        for info in items:
            if info.get("type") == "directory":
                continue
            full = str(info["name"])
            if full.endswith("/"):  # a directory marker ("folder" made by a console)
                continue
            name = full.rsplit("/", 1)[-1]
            if not name or name.startswith("."):
                continue
            yield FileInfo(name, int(info.get("size") or 0))

    def remove(self, handle: Handle) -> None:
        """Delete the file. Raise NotFound if it is missing."""
        # Object stores delete a missing key without complaint: the stat tells.
        self.stat(handle)
        try:
            self._fs.rm_file(self._path(handle))
        except Exception as exc:
            raise map_error(exc, f"remove {object_path(handle)}") from exc


def _list_s3(fs: Any, base: str) -> list[dict[str, Any]]:
    """Return the info of every object below ``base/`` on s3fs ``fs``: list_objects_v2
    pages (s3fs retries each page), no delimiter, nothing cached. Unlike ``find()``, an
    empty prefix costs one request: find() then asks whether ``base`` itself is an object
    (a HEAD and a second LIST)."""
    from fsspec.asyn import sync

    found: list[dict[str, Any]] = sync(fs.loop, fs._lsdir, base, delimiter="")
    return found


async def _read_up_to(body: Any, n: int) -> bytes:
    """Return the next ``n`` bytes of an aiobotocore streaming ``body`` (fewer only where
    it ends): its ``read`` returns what has arrived, often much less."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = await body.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _close_body(body: Any) -> None:
    """Close an aiobotocore streaming body (on the event loop: aiohttp's connection
    objects belong to it)."""
    body.close()


def _takes(fs: Any, method: str, parameter: str) -> bool:
    """Return whether ``fs`` has ``method`` and it takes ``parameter`` (a keyword of the
    private async API of s3fs that older versions lack)."""
    fn = getattr(fs, method, None)
    if fn is None:
        return False
    try:
        return parameter in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _protocol(fs: Any) -> str:
    proto = getattr(fs, "protocol", "fsspec")
    return str(proto[0] if isinstance(proto, tuple | list) else proto)

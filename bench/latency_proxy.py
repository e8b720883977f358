#!/usr/bin/env python3
"""A latency-injecting HTTP/1.1 reverse proxy on 127.0.0.1, for benchmarks against a local
S3 server (moto): object storage as a client sees it over a real network, measured.

It works at the TCP level and parses HTTP/1.1 just enough to find request and response
boundaries (head, then a body framed by ``Content-Length``, ``Transfer-Encoding: chunked``
or the end of the connection; HEAD, 1xx, 204 and 304 responses have none). Bytes are
forwarded unchanged, so SigV4 signatures stay valid: nothing is rewritten, not even ``Host``
(clients are configured with the proxy's endpoint and moto accepts any host). Bodies are
streamed, never buffered whole; aws-chunked uploads are ordinary bodies at this level.
Keep-alive connections and many concurrent connections work: each client connection gets
its own upstream connection.

What it injects (all configurable):

- ``latency`` one way, per request: each request head waits ``latency`` before it goes
  upstream and each response head (an interim ``100 Continue`` too) waits ``latency``
  before it goes back, so a request costs one extra round trip (default 30 ms each way,
  ~60 ms RTT: a VM reaching object storage in another region or a provider a few hundred
  km away; same-region S3 is ~5–20 ms for small requests).
- a new connection costs ``connect_rtts`` round trips more before its first request (default
  1: the TCP handshake, which the loopback interface makes free; real HTTPS adds 1–2 for TLS).
- ``bandwidth`` in bytes/s per direction, shared by all connections like one link (default
  100 MiB/s ≈ 840 Mbit/s each way, about what one VM gets to object storage; 0 = no cap).

What it counts (:meth:`LatencyProxy.stats`, :meth:`LatencyProxy.reset`): requests by kind
(``get`` object, ``get_range`` ranged GET, ``put``, ``head``, ``list`` GET on a bucket that
lists, ``delete``, ``other``), bytes each way on the wire (heads included), connections
accepted, and the most requests in flight at once, overall and by kind. Path-style
addressing is assumed (what s3fs and restic use with an IP endpoint).

Importable (``LatencyProxy(target).start()`` runs it on a thread of its own with its own
event loop) or standalone::

    python bench/latency_proxy.py --target http://127.0.0.1:PORT --latency-ms 30 [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DEFAULT_BANDWIDTH", "DEFAULT_LATENCY_MS", "KINDS", "LatencyProxy", "classify"]

DEFAULT_LATENCY_MS = 30.0
DEFAULT_BANDWIDTH = 100 * 1024 * 1024  # bytes/s, each direction
DEFAULT_CONNECT_RTTS = 1.0
KINDS = ("get", "get_range", "put", "head", "list", "delete", "other")

_CHUNK = 256 * 1024
_HEAD_LIMIT = 1024 * 1024
_LIST_KEYS = {"list-type", "prefix", "delimiter", "marker", "continuation-token",
              "start-after", "max-keys", "encoding-type"}
_BURST = 0.010  # seconds of bandwidth a direction may catch up on after a pause


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """Return the kind of an S3 request (path-style): one of :data:`KINDS`."""
    split = urlsplit(target)
    bucket, _, key = split.path.lstrip("/").partition("/")
    query = {k for k, _ in parse_qsl(split.query, keep_blank_values=True)}
    m = method.upper()
    if m == "HEAD":
        return "head"
    if m == "DELETE":
        return "delete"
    if m == "GET":
        if key:
            return "get_range" if "range" in headers else "get"
        if bucket and (not query or query & _LIST_KEYS):
            return "list"
        return "other"
    if m == "PUT" and key:
        return "put"
    return "other"


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Return (first word, second word, lower-cased headers) of a request or response head."""
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return first[0], first[1] if len(first) > 1 else "", headers


class _Shaper:
    """One direction of a link of ``rate`` bytes/s shared by every connection (a virtual
    clock: each send books its transfer time after the previous one's)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._t = 0.0

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self._t = max(now - _BURST, self._t) + n / self.rate
        if self._t > now + 0.001:
            await asyncio.sleep(self._t - now)


@dataclass
class _Request:
    kind: str
    method: str
    target: str
    started: float = field(default_factory=time.monotonic)
    done: bool = False


@dataclass
class _Counters:
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    in_flight_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    max_in_flight_by_kind: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(KINDS, 0))


class LatencyProxy:
    """A reverse proxy to ``target`` (``http://host:port``) on ``host:port`` (port 0: a free
    one) that adds ``latency_ms`` each way per request and caps ``bandwidth`` bytes/s each
    way. ``latency_ms`` may be changed while it runs (it applies to the next request)."""

    def __init__(self, target: str, *, latency_ms: float = DEFAULT_LATENCY_MS,
                 bandwidth: float = DEFAULT_BANDWIDTH,
                 connect_rtts: float = DEFAULT_CONNECT_RTTS,
                 host: str = "127.0.0.1", port: int = 0, record: bool = False) -> None:
        parsed = urlsplit(target)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"target must be http://HOST:PORT, not {target!r}")
        self._target = (parsed.hostname, parsed.port or 80)
        self.latency_ms = latency_ms
        self.connect_rtts = connect_rtts
        #: Keep a log of every request (:meth:`request_log`), for timelines.
        self.record = record
        self._log: list[tuple[float, float, str, str, str]] = []
        self._up = _Shaper(bandwidth)
        self._down = _Shaper(bandwidth)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._c = _Counters()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public -----------------------------------------------------------------------------

    @property
    def bandwidth(self) -> float:
        """Return the cap in bytes/s each way (0: none)."""
        return self._up.rate

    @property
    def endpoint(self) -> str:
        """Return ``http://host:port`` of the proxy (once it listens)."""
        return f"http://{self._host}:{self._port}"

    def stats(self) -> dict[str, Any]:
        """Return the counters since the start or the last :meth:`reset` (a copy)."""
        with self._lock:
            c = self._c
            return {
                "requests": dict(c.requests),
                "total_requests": sum(c.requests.values()),
                "bytes_up": c.bytes_up,
                "bytes_down": c.bytes_down,
                "connections": c.connections,
                "max_in_flight": c.max_in_flight,
                "max_in_flight_by_kind": dict(c.max_in_flight_by_kind),
            }

    def request_log(self) -> list[tuple[float, float, str, str, str]]:
        """Return (start, end, kind, method, target) of every finished request since the
        last :meth:`reset` if ``record`` is set (times: ``time.monotonic()``, from when the
        proxy read the request head to when it sent the response's last byte)."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Zero the counters (requests in flight stay counted as in flight)."""
        with self._lock:
            self._log = []
            in_flight, by_kind = self._c.in_flight, dict(self._c.in_flight_by_kind)
            self._c = _Counters(in_flight=in_flight, in_flight_by_kind=by_kind)

    async def serve(self) -> asyncio.Server:
        """Start listening on the running event loop; return the server."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port,
                                                  limit=_HEAD_LIMIT)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._server

    def start(self) -> LatencyProxy:
        """Run on a daemon thread with an event loop of its own; return once listening."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.serve())
            except BaseException as exc:  # handed to the starting thread
                failed.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def close(self) -> None:
        """Stop listening, drop every connection and stop the thread (if :meth:`start`)."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- counting ---------------------------------------------------------------------------

    def _begin(self, kind: str, head_bytes: int) -> None:
        with self._lock:
            c = self._c
            c.requests[kind] += 1
            c.bytes_up += head_bytes
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
            c.in_flight_by_kind[kind] += 1
            c.max_in_flight_by_kind[kind] = max(c.max_in_flight_by_kind[kind],
                                                c.in_flight_by_kind[kind])

    def _end(self, req: _Request) -> None:
        if req.done:
            return
        req.done = True
        with self._lock:
            if self.record:
                self._log.append((req.started, time.monotonic(), req.kind, req.method,
                                  req.target))
            self._c.in_flight -= 1
            self._c.in_flight_by_kind[req.kind] -= 1

    def _count(self, up: bool, n: int) -> None:
        with self._lock:
            if up:
                self._c.bytes_up += n
            else:
                self._c.bytes_down += n

    # -- forwarding -------------------------------------------------------------------------

    async def _handle(self, creader: asyncio.StreamReader,
                      cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._c.connections += 1
        first = True
        try:
            while True:
                head = await self._head(creader)
                if head is None:
                    return
                method, target, headers = _parse_head(head)
                req = _Request(classify(method, target, headers), method.upper(), target)
                self._begin(req.kind, 0)
                try:
                    rtts = 2 * self.connect_rtts if first else 0
                    first = False
                    if self.latency_ms > 0:
                        await asyncio.sleep(self.latency_ms / 1000 * (1 + rtts))
                    keep = await self._exchange(req, head, headers, creader, cwriter)
                finally:
                    self._end(req)
                if not keep:
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                asyncio.CancelledError):
            # A broken or cancelled (close()) connection just ends: asyncio's stream
            # callback of Python 3.11 calls task.exception(), which a cancelled task raises.
            pass
        finally:
            cwriter.close()
            self._tasks.discard(task)

    async def _exchange(self, req: _Request, head: bytes, headers: dict[str, str],
                        creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> bool:
        """Forward one request (on an upstream connection of its own) and its response;
        return whether the client connection stays open.

        moto's server (werkzeug) closes its connection after every response; the proxy
        keeps the client's connection open anyway, as a real object store does, and drops
        ``Connection: close`` from responses it can frame (response heads are not signed).
        So a client pays for a new connection only when it opens one.
        """
        ureader, uwriter = await asyncio.open_connection(*self._target, limit=_HEAD_LIMIT)
        body: asyncio.Task[None] | None = None
        try:
            await self._send(uwriter, head, True)
            # The body goes up while the response is awaited: with ``Expect: 100-continue``
            # the client sends it only after the interim response.
            body = asyncio.create_task(
                self._body(creader, uwriter, headers, True, until_eof=False))
            while True:
                rhead = await self._head(ureader)
                if rhead is None:
                    raise ConnectionError("the server closed without a response")
                version, code, rheaders = _parse_head(rhead)
                status = int(code) if code.isdigit() else 0
                if self.latency_ms > 0:
                    await asyncio.sleep(self.latency_ms / 1000)
                if 100 <= status < 200:
                    await self._send(cwriter, rhead, False)
                    continue  # an interim response (100 Continue): the final one follows
                no_body = req.method == "HEAD" or status in (204, 304)
                framed = (no_body or "content-length" in rheaders
                          or "chunked" in rheaders.get("transfer-encoding", "").lower())
                keep = (framed and version == "HTTP/1.1"
                        and "close" not in headers.get("connection", "").lower())
                if keep:
                    rhead = b"".join(line for line in rhead.splitlines(keepends=True)
                                     if not line.lower().startswith(b"connection:"))
                await self._send(cwriter, rhead, False)
                if not no_body:
                    await self._body(ureader, cwriter, rheaders, False, until_eof=True)
                break
            # The server answered, so it has read the whole request body (or never will).
            done, _ = await asyncio.wait({body}, timeout=1.0)
            if not done:
                return False  # the client's connection is mid-body: drop it
            body.result()
            return keep
        finally:
            if body is not None and not body.done():
                body.cancel()
                await asyncio.gather(body, return_exceptions=True)
            uwriter.close()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, up: bool) -> None:
        await (self._up if up else self._down).take(len(data))
        writer.write(data)
        self._count(up, len(data))
        await writer.drain()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    n: int | None, up: bool) -> None:
        """Forward ``n`` bytes (None: until the end of the stream)."""
        while n is None or n > 0:
            data = await reader.read(_CHUNK if n is None else min(n, _CHUNK))
            if not data:
                if n is None:
                    return
                raise asyncio.IncompleteReadError(b"", n)
            if n is not None:
                n -= len(data)
            await self._send(writer, data, up)

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    headers: dict[str, str], up: bool, until_eof: bool) -> None:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                await self._send(writer, line, up)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then an empty line
                        line = await reader.readuntil(b"\r\n")
                        await self._send(writer, line, up)
                        if line == b"\r\n":
                            return
                await self._copy(reader, writer, size + 2, up)
        elif "content-length" in headers:
            await self._copy(reader, writer, int(headers["content-length"]), up)
        elif until_eof:
            await self._copy(reader, writer, None, up)

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> bytes | None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return None
            if head.strip():
                return head
            # Stray empty lines between messages are allowed; skip them.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS,
                        help="added latency each way per request (default %(default)s)")
    parser.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH,
                        help="bytes/s each way, shared by all connections; 0 = no cap "
                             "(default %(default)s = 100 MiB/s)")
    parser.add_argument("--connect-rtts", type=float, default=DEFAULT_CONNECT_RTTS,
                        help="round trips a new connection costs (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    args = parser.parse_args()
    proxy = LatencyProxy(args.target, latency_ms=args.latency_ms, bandwidth=args.bandwidth,
                         connect_rtts=args.connect_rtts, host=args.host, port=args.port)

    async def run() -> None:
        server = await proxy.serve()
        print(f"proxy {proxy.endpoint} -> {args.target}, {args.latency_ms:g} ms each way, "
              f"{args.bandwidth / 2**20:g} MiB/s each way; Ctrl-C prints the counters",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())
    print(proxy.stats())


if __name__ == "__main__":
    main()

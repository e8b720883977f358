#!/usr/bin/env python3
"""S3 client libraries compared (issue 26): s3fs as our code configures it, obstore (Rust
``object_store`` bindings), boto3 (sync, a thread pool) and aiobotocore directly, against one
moto S3 server on 127.0.0.1 reached through :mod:`latency_proxy` (never a real cloud
endpoint).

What is measured, per client:

1. start-up: a fresh ``python -c`` that imports the library, builds a client and does one
   whole-object GET of 1 KiB (s3fs and botocore load their service models lazily, so
   "import + build" alone would flatter them); import, build and first-request times, the
   process's wall and CPU time, RSS after the import and after the request. Median of
   ``--startup-reps`` (5); the latency is 0 ms;
2. small objects, at 0 ms and ``--latency-ms`` (30) each way: 50 sequential whole-object GETs
   of 1 KiB (per-request median and p90) and 64 whole-object GETs of 4 KiB, 8 in flight;
3. large objects, at ``--latency-ms``: 8 PUTs of 16 MiB (conditional, ``If-None-Match: *``,
   one PUT each: what ``FsspecStorage.save`` does for pack files) with 1, 2, 4 and 8 in flight,
   and 8 ranged GETs of 8 MiB, 8 in flight; MB/s (10^6 bytes) and the CPU seconds the client
   process used (``resource.getrusage``: every thread, Rust's too) per 100 MB;
4. LIST of 1000 keys (pages of 1000), at both latencies.

Each client runs in a worker subprocess of its own (the proxy's and moto's CPU is not
counted against it). Before each timed operation the worker warms up as many connections as
the operation keeps in flight, then the proxy's counters are zeroed, so the counts shown are
those of the timed part only and are checked against what the operation should cost (a
whole-object GET is one GET: no HEAD first; a PUT is one PUT: no multipart upload).

Clients take turns operation by operation (the order rotates each round), so drift in the
load of this shared machine hits them alike; every figure is the median of ``--rounds`` (3)
with the range beside it, and the 1-minute load average is sampled throughout.

Note on CPU: the endpoint is plain http, and botocore (s3fs, boto3, aiobotocore) then
SHA-256-hashes every PUT body for SigV4 and also sends a CRC32 checksum header; over https
(real S3) it skips the SHA-256 and sends the CRC32 as a trailer. object_store always
SHA-256-hashes PUT bodies unless ``unsigned_payload`` is set, and sends no CRC32 by
default. The run ends with the cost of each hash on this machine, to adjust for it.

::

    .venv/bin/python bench/s3_clients_bench.py [--quick] [--rounds 3] [--latency-ms 30]
        [--clients s3fs,obstore,boto3,aiobotocore] [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

CLIENTS = ("s3fs", "obstore", "boto3", "aiobotocore")
#: Measured for PUTs only: s3fs with SigV4 payload signing off, as botocore does by itself
#: over https (it then sends UNSIGNED-PAYLOAD and only the CRC32): the CPU real S3 costs.
PUT_VARIANTS = ("s3fs-unsigned",)
BUCKET = "clients"
KiB = 1024
MiB = 1024 * 1024
MB = 1_000_000

SMALL_N, SMALL_SIZE = 50, 1 * KiB
WHOLE_N, WHOLE_SIZE, WHOLE_INFLIGHT = 64, 4 * KiB, 8
PUT_N, PUT_SIZE, PUT_INFLIGHT = 8, 16 * MiB, (1, 2, 4, 8)
RANGE_N, RANGE_SIZE, RANGE_INFLIGHT = 8, 8 * MiB, 8
LIST_N = 1000

REGION = "us-east-1"
#: botocore Config of our code (storage/remote.py ``open_s3``): one retry layer only, ours.
BOTO_CONFIG: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"},
                               "connect_timeout": 10.0, "read_timeout": 60.0}


def small_key(i: int) -> str:
    return f"small/{i:04d}"


def whole_key(i: int) -> str:
    return f"whole/{i:04d}"


def list_key(i: int) -> str:
    return f"list/{i:04d}"


BIG_KEY = "big/range-source"


# -- clients (built in the worker processes; libraries imported lazily) ----------------------


class SyncClient(Protocol):
    def get(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, length: int) -> bytes: ...
    def put(self, key: str, data: bytes) -> None: ...
    def list(self, prefix: str) -> int: ...


class AsyncClient(Protocol):
    async def get(self, key: str) -> bytes: ...
    async def get_range(self, key: str, start: int, length: int) -> bytes: ...
    async def put(self, key: str, data: bytes) -> None: ...
    async def list(self, prefix: str) -> int: ...


def s3fs_kwargs(endpoint: str, unsigned: bool = False) -> dict[str, Any]:
    """``s3fs.S3FileSystem`` arguments as ``open_s3`` builds them (``unsigned``: without
    SigV4 payload hashing, see :data:`PUT_VARIANTS`)."""
    config = BOTO_CONFIG | ({"s3": {"payload_signing_enabled": False}} if unsigned else {})
    return {"client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
            "config_kwargs": config, "skip_instance_cache": True,
            "use_listings_cache": False}


def obstore_kwargs(endpoint: str) -> dict[str, Any]:
    """``obstore.store.S3Store`` arguments: the same endpoint, timeouts and no retries."""
    return {"endpoint": endpoint, "region": REGION,
            "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "client_options": {"allow_http": True, "timeout": "60s", "connect_timeout": "10s"},
            "retry_config": {"max_retries": 0}}


class S3fsClient:
    """What FsspecStorage does: cat_file (whole: max_concurrency=1, no HEAD), pipe_file
    mode="create", _lsdir(delimiter="") for listings; sync calls into fsspec's loop."""

    def __init__(self, endpoint: str, bucket: str, unsigned: bool = False) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem(**s3fs_kwargs(endpoint, unsigned))
        self.fs.retries = 1
        self.bucket = bucket

    def get(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self.bucket}/{key}", max_concurrency=1))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(self.fs.cat_file(f"{self.bucket}/{key}", start=start or None,
                                      end=start + length))

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.bucket}/{key}", data, mode="create")

    def list(self, prefix: str) -> int:
        from fsspec.asyn import sync

        found = sync(self.fs.loop, self.fs._lsdir, f"{self.bucket}/{prefix.rstrip('/')}",
                     delimiter="")
        return len(found)


class ObstoreClient:
    """obstore's sync API (it releases the GIL; requests run on its tokio runtime)."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        import obstore
        from obstore.store import S3Store

        self.obs = obstore
        self.store = S3Store(bucket, **obstore_kwargs(endpoint))

    def get(self, key: str) -> bytes:
        return bytes(self.obs.get(self.store, key).bytes())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(self.obs.get_range(self.store, key, start=start, length=length))

    def put(self, key: str, data: bytes) -> None:
        self.obs.put(self.store, key, data, mode="create", use_multipart=False)

    def list(self, prefix: str) -> int:
        return sum(len(batch) for batch in
                   self.obs.list(self.store, prefix.rstrip("/") + "/", chunk_size=1000))


class Boto3Client:
    """One boto3 client shared by the pool's threads (urllib3 pool of 10)."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config

        self.c = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                              config=Config(**BOTO_CONFIG))
        self.bucket = bucket

    def get(self, key: str) -> bytes:
        body = self.c.get_object(Bucket=self.bucket, Key=key)["Body"]
        data: bytes = body.read()
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        body = self.c.get_object(Bucket=self.bucket, Key=key,
                                 Range=f"bytes={start}-{start + length - 1}")["Body"]
        data: bytes = body.read()
        return data

    def put(self, key: str, data: bytes) -> None:
        self.c.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")

    def list(self, prefix: str) -> int:
        n = 0
        pages = self.c.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000})
        for page in pages:
            n += len(page.get("Contents", []))
        return n


class AiobotocoreClient:
    """aiobotocore directly (what s3fs sits on), without fsspec's sync layer."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.c = client
        self.bucket = bucket

    async def get(self, key: str) -> bytes:
        resp = await self.c.get_object(Bucket=self.bucket, Key=key)
        async with resp["Body"] as stream:
            data: bytes = await stream.read()
        return data

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        resp = await self.c.get_object(Bucket=self.bucket, Key=key,
                                       Range=f"bytes={start}-{start + length - 1}")
        async with resp["Body"] as stream:
            data: bytes = await stream.read()
        return data

    async def put(self, key: str, data: bytes) -> None:
        await self.c.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")

    async def list(self, prefix: str) -> int:
        n = 0
        pages = self.c.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000})
        async for page in pages:
            n += len(page.get("Contents", []))
        return n


# -- start-up snippets (self-contained: nothing of this module is imported) ------------------

_RSS = "int([x for x in open('/proc/self/status') if x.startswith('VmRSS')][0].split()[1])"
_PRE = "import time\nt0 = time.perf_counter()\n"
_AFTER_IMPORT = f"t1 = time.perf_counter()\nrss1 = {_RSS}\nt1b = time.perf_counter()\n"
_POST = f"""t3 = time.perf_counter()
rss2 = {_RSS}
import json, resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1b, "first_s": t3 - t2,
                  "ready_s": t3 - t0 - (t1b - t1), "rss_import_kib": rss1,
                  "rss_first_kib": rss2, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "n": len(data)}}))
"""


def startup_snippet(client: str, endpoint: str, bucket: str) -> str:
    """Return ``python -c`` code: import, build, first GET of ``small/0000``, print JSON."""
    key = small_key(0)
    if client == "python":
        body = "t2 = time.perf_counter()\ndata = b''\n"
        return _PRE + _AFTER_IMPORT + body + _POST
    if client == "s3fs":
        imp = "import s3fs\n"
        body = (f"fs = s3fs.S3FileSystem(**{s3fs_kwargs(endpoint)!r})\nfs.retries = 1\n"
                "t2 = time.perf_counter()\n"
                f"data = fs.cat_file({bucket + '/' + key!r}, max_concurrency=1)\n")
    elif client == "obstore":
        imp = "import obstore\nfrom obstore.store import S3Store\n"
        body = (f"store = S3Store({bucket!r}, **{obstore_kwargs(endpoint)!r})\n"
                "t2 = time.perf_counter()\n"
                f"data = bytes(obstore.get(store, {key!r}).bytes())\n")
    elif client == "boto3":
        imp = "import boto3\nfrom botocore.config import Config\n"
        body = (f"c = boto3.client('s3', endpoint_url={endpoint!r}, region_name={REGION!r}, "
                f"config=Config(**{BOTO_CONFIG!r}))\n"
                "t2 = time.perf_counter()\n"
                f"data = c.get_object(Bucket={bucket!r}, Key={key!r})['Body'].read()\n")
    elif client == "aiobotocore":
        imp = ("import asyncio\nfrom aiobotocore.session import get_session\n"
               "from botocore.config import Config\n")
        body = f"""async def main():
    global t2, data
    async with get_session().create_client(
            's3', endpoint_url={endpoint!r}, region_name={REGION!r},
            config=Config(**{BOTO_CONFIG!r})) as c:
        t2 = time.perf_counter()
        r = await c.get_object(Bucket={bucket!r}, Key={key!r})
        async with r['Body'] as s:
            data = await s.read()
asyncio.run(main())
"""
    else:
        raise ValueError(client)
    return _PRE + imp + _AFTER_IMPORT + body + _POST


# -- worker side -----------------------------------------------------------------------------


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _check(got: bytes, size: int, what: str) -> None:
    if len(got) != size:
        raise RuntimeError(f"{what}: got {len(got)} bytes, expected {size}")


class Op:
    """One timed operation: ``prepare`` (untimed: data, warm-up), then ``run``."""

    def __init__(self, msg: dict[str, Any]) -> None:
        self.msg = msg
        self.name: str = msg["op"]
        self.inflight: int = int(msg.get("inflight", 1))
        self.data = b""
        if self.name == "put":
            self.data = os.urandom(PUT_SIZE)

    def calls(self) -> list[tuple[str, tuple[Any, ...], int]]:
        """Return (method, args, expected size or -1) of each request of the operation."""
        m = self.msg
        if self.name == "small":
            return [("get", (small_key(i),), SMALL_SIZE) for i in range(SMALL_N)]
        if self.name == "whole":
            return [("get", (whole_key(i),), WHOLE_SIZE) for i in range(WHOLE_N)]
        if self.name == "put":
            return [("put", (f"put/{m['tag']}/{i:02d}", self.data), -1) for i in range(PUT_N)]
        if self.name == "range":
            return [("get_range", (BIG_KEY, i * RANGE_SIZE, RANGE_SIZE), RANGE_SIZE)
                    for i in range(RANGE_N)]
        if self.name == "list":
            return [("list", ("list/",), -1)]
        raise ValueError(self.name)


def _summary(op: Op, wall: float, cpu: float, lat: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu}
    if op.name == "small":
        q = statistics.quantiles(lat, n=10)
        out |= {"median_ms": statistics.median(lat) * 1e3, "p90_ms": q[-1] * 1e3}
    nbytes = {"put": PUT_N * PUT_SIZE, "range": RANGE_N * RANGE_SIZE}.get(op.name)
    if nbytes:
        out |= {"bytes": nbytes, "mb_s": nbytes / MB / wall,
                "cpu_per_100mb": cpu / (nbytes / (100 * MB))}
    return out


def run_sync(client: SyncClient, op: Op, handshake: Callable[[], None]) -> dict[str, Any]:
    calls = op.calls()
    lat: list[float] = []

    def one(call: tuple[str, tuple[Any, ...], int]) -> Any:
        method, args, size = call
        t = time.perf_counter()
        got = getattr(client, method)(*args)
        lat.append(time.perf_counter() - t)
        if size >= 0:
            _check(got, size, f"{method} {args[0]}")
        return got

    with ThreadPoolExecutor(max_workers=op.inflight) as pool:
        # Warm up as many connections as the operation keeps busy.
        list(pool.map(lambda i: client.get(small_key(i)), range(op.inflight)))
        lat.clear()
        handshake()
        t0, c0 = time.perf_counter(), _cpu()
        results = [one(c) for c in calls] if op.inflight == 1 else list(pool.map(one, calls))
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    out = _summary(op, wall, cpu, lat)
    if op.name == "list":
        out["keys"] = results[0]
    return out


async def run_async(client: AsyncClient, op: Op,
                    handshake: Callable[[], None]) -> dict[str, Any]:
    calls = op.calls()
    lat: list[float] = []
    sem = asyncio.Semaphore(op.inflight)

    async def one(call: tuple[str, tuple[Any, ...], int]) -> Any:
        method, args, size = call
        async with sem:
            t = time.perf_counter()
            fn: Callable[..., Awaitable[Any]] = getattr(client, method)
            got = await fn(*args)
            lat.append(time.perf_counter() - t)
        if size >= 0:
            _check(got, size, f"{method} {args[0]}")
        return got

    await asyncio.gather(*(client.get(small_key(i)) for i in range(op.inflight)))
    handshake()  # blocks the loop: nothing else runs on it meanwhile
    t0, c0 = time.perf_counter(), _cpu()
    results = await asyncio.gather(*(one(c) for c in calls))
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    out = _summary(op, wall, cpu, lat)
    if op.name == "list":
        out["keys"] = results[0]
    return out


def worker(client_name: str, endpoint: str, bucket: str) -> None:
    """Serve operations: read a JSON line, prepare, print ``ready``, wait for ``go``, run,
    print the result."""
    out = sys.stdout

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def handshake() -> None:
        send({"ready": True})
        if json.loads(sys.stdin.readline()).get("go") is not True:
            raise SystemExit("protocol error")

    loop: asyncio.AbstractEventLoop | None = None
    aclient: AsyncClient | None = None
    sclient: SyncClient | None = None
    ctx: Any = None
    if client_name == "aiobotocore":
        from aiobotocore.session import get_session
        from botocore.config import Config

        loop = asyncio.new_event_loop()
        ctx = get_session().create_client("s3", endpoint_url=endpoint, region_name=REGION,
                                          config=Config(**BOTO_CONFIG))
        aclient = AiobotocoreClient(loop.run_until_complete(ctx.__aenter__()), bucket)
    else:
        factories: dict[str, Callable[[str, str], SyncClient]] = {
            "s3fs": S3fsClient, "obstore": ObstoreClient, "boto3": Boto3Client,
            "s3fs-unsigned": lambda e, b: S3fsClient(e, b, unsigned=True)}
        sclient = factories[client_name](endpoint, bucket)
    send({"hello": client_name, "pid": os.getpid()})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "exit":
            break
        op = Op(msg)
        try:
            if loop is not None and aclient is not None:
                result = loop.run_until_complete(run_async(aclient, op, handshake))
            else:
                assert sclient is not None
                result = run_sync(sclient, op, handshake)
        except Exception as exc:  # reported, the run goes on
            result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        send({"result": result})
    if loop is not None:
        loop.run_until_complete(ctx.__aexit__(None, None, None))
        loop.close()


# -- parent side -----------------------------------------------------------------------------


class Worker:
    """A worker subprocess for one client."""

    def __init__(self, client: str, endpoint: str, env: dict[str, str], log: Path) -> None:
        self.client = client
        self.log = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", client,
             "--endpoint", endpoint, "--bucket", BUCKET],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env=env)
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.client} died; see {self.log}")
        obj: dict[str, Any] = json.loads(line)
        return obj

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def call(self, msg: dict[str, Any], proxy: Any) -> dict[str, Any]:
        self._send(msg)
        first = self._read()
        if "result" in first:  # failed before the timed part
            res: dict[str, Any] = first["result"]
            return res
        proxy.reset()
        self._send({"go": True})
        res = self._read()["result"]
        res["proxy"] = proxy.stats()
        return res

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send({"op": "exit"})
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def expected_requests(op: str) -> dict[str, int]:
    return {"small": {"get": SMALL_N}, "whole": {"get": WHOLE_N}, "put": {"put": PUT_N},
            "range": {"get_range": RANGE_N}, "list": {"list": 1}, "startup": {"get": 1},
            "startup-python": {}}[op]


def request_check(op: str, stats: dict[str, Any]) -> str:
    """Return "" if the counted requests are exactly those expected, else what differed."""
    want = expected_requests(op)
    got = {k: v for k, v in stats["requests"].items() if v}
    return "" if got == want else f"expected {want}, counted {got}"


def seed(endpoint: str) -> None:
    """Create the bucket and the objects read by the benchmark (straight to moto)."""
    import boto3

    c = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    c.create_bucket(Bucket=BUCKET)
    items = ([(small_key(i), SMALL_SIZE) for i in range(SMALL_N)]
             + [(whole_key(i), WHOLE_SIZE) for i in range(WHOLE_N)]
             + [(list_key(i), 100) for i in range(LIST_N)])
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: c.put_object(Bucket=BUCKET, Key=kv[0],
                                              Body=os.urandom(kv[1])), items))
    c.put_object(Bucket=BUCKET, Key=BIG_KEY, Body=os.urandom(RANGE_N * RANGE_SIZE))


def delete_prefix(endpoint: str, prefix: str) -> None:
    import boto3

    c = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            c.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def hash_costs() -> dict[str, float]:
    """Return CPU seconds per 100 MB of SHA-256, CRC32 and MD5 in this Python."""
    import hashlib

    buf = os.urandom(16 * MiB)
    reps = -(-100 * MB // len(buf))
    out: dict[str, float] = {}
    fns: dict[str, Callable[[bytes], object]] = {
        "sha256": lambda b: hashlib.sha256(b).digest(),
        "crc32 (zlib)": lambda b: zlib.crc32(b),
        "md5": lambda b: hashlib.md5(b).digest(),
    }
    for name, fn in fns.items():
        c0 = time.process_time()
        for _ in range(reps):
            fn(buf)
        out[name] = (time.process_time() - c0) * (100 * MB) / (reps * len(buf))
    return out


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rotate(items: Sequence[str], n: int) -> list[str]:
    k = n % len(items)
    return [*items[k:], *items[:k]]


class Runner:
    def __init__(self, args: argparse.Namespace, proxy: Any, endpoint: str,
                 moto_endpoint: str, env: dict[str, str], work: Path) -> None:
        self.args = args
        self.proxy = proxy
        self.endpoint = endpoint
        self.moto_endpoint = moto_endpoint
        self.env = env
        self.work = work
        self.results: list[dict[str, Any]] = []
        self.loads: list[tuple[float, float, float, float]] = []
        self.t0 = time.monotonic()

    def sample_load(self) -> None:
        self.loads.append((time.monotonic() - self.t0, *os.getloadavg()))

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s load {os.getloadavg()[0]:.2f}] {text}",
              file=sys.stderr, flush=True)

    def startup(self, clients: list[str]) -> None:
        self.proxy.latency_ms = 0.0
        for rep in range(self.args.startup_reps):
            self.sample_load()
            for client in rotate(["python", *clients], rep):
                code = startup_snippet(client, self.endpoint, BUCKET)
                self.proxy.reset()
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", code], env=self.env,
                                      capture_output=True, text=True, check=False)
                wall = time.perf_counter() - t
                stats = self.proxy.stats()
                rec: dict[str, Any] = {"op": "startup", "client": client, "round": rep,
                                       "latency_ms": 0.0, "load1": os.getloadavg()[0]}
                if proc.returncode != 0:
                    rec["error"] = proc.stderr[-500:]
                else:
                    rec |= json.loads(proc.stdout.strip().splitlines()[-1])
                    rec["process_wall_s"] = wall
                    rec["check"] = request_check(
                        "startup-python" if client == "python" else "startup", stats)
                rec["proxy"] = stats
                self.results.append(rec)
            self.log(f"start-up rep {rep + 1}/{self.args.startup_reps}")

    def ops_for(self, latency: float) -> Iterator[dict[str, Any]]:
        yield {"op": "small", "inflight": 1}
        yield {"op": "whole", "inflight": WHOLE_INFLIGHT}
        yield {"op": "list", "inflight": 1}
        if latency in self.args.throughput_latencies:
            for n in self.args.put_inflight:
                yield {"op": "put", "inflight": n}
            yield {"op": "range", "inflight": RANGE_INFLIGHT}

    def rounds(self, clients: list[str], variants: list[str]) -> None:
        for rnd in range(self.args.rounds):
            order = rotate(clients, rnd)
            put_order = rotate([*clients, *variants], rnd)
            workers = {c: Worker(c, self.endpoint, self.env, self.work / f"worker-{c}.log")
                       for c in put_order}
            try:
                for latency in self.args.latencies:
                    self.proxy.latency_ms = latency
                    for msg in self.ops_for(latency):
                        self.sample_load()
                        for client in put_order if msg["op"] == "put" else order:
                            tag = f"{client}-{rnd}-{latency:g}-{msg['inflight']}"
                            res = workers[client].call({**msg, "tag": tag}, self.proxy)
                            rec = {"op": msg["op"], "inflight": msg["inflight"],
                                   "client": client, "round": rnd, "latency_ms": latency,
                                   "load1": os.getloadavg()[0], **res}
                            if "proxy" in res:
                                rec["check"] = request_check(msg["op"], res["proxy"])
                            self.results.append(rec)
                            if msg["op"] == "put":
                                delete_prefix(self.moto_endpoint, f"put/{tag}/")
                        self.log(f"round {rnd + 1}/{self.args.rounds} {latency:g} ms "
                                 f"{msg['op']} x{msg['inflight']}")
            finally:
                for w in workers.values():
                    w.close()


# -- summary ---------------------------------------------------------------------------------


def pick(results: list[dict[str, Any]], client: str, op: str, key: str,
         latency: float | None = None, inflight: int | None = None) -> list[float]:
    return [float(r[key]) for r in results
            if r["client"] == client and r["op"] == op and key in r
            and (latency is None or r["latency_ms"] == latency)
            and (inflight is None or r.get("inflight") == inflight)]


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    m = format(med(values), fmt)
    if len(values) == 1:
        return m
    return f"{m} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def summarize(results: list[dict[str, Any]], clients: list[str], variants: list[str],
              args: argparse.Namespace,
              loads: list[tuple[float, float, float, float]],
              hashes: dict[str, float]) -> str:
    lines: list[str] = []
    every = [*clients, *variants]
    head = "| figure | " + " | ".join(every) + " |"
    sep = "|---|" + "---|" * len(every)

    def row(label: str, op: str, key: str, fmt: str, scale: float = 1.0,
            latency: float | None = None, inflight: int | None = None,
            cols: list[str] | None = None) -> None:
        cells = [cell([v * scale for v in pick(results, c, op, key, latency, inflight)], fmt)
                 for c in (cols or every)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    n_startup = args.startup_reps
    lines += [f"### Start-up (fresh `python -c`, median of {n_startup}, 0 ms; "
              "ms unless noted)", "",
              "| figure | python (bare) | " + " | ".join(clients) + " |",
              "|---|---|" + "---|" * len(clients)]
    cols = ["python", *clients]
    row("import", "startup", "import_s", ".0f", 1e3, cols=cols)
    row("build client", "startup", "build_s", ".0f", 1e3, cols=cols)
    row("first GET (1 KiB)", "startup", "first_s", ".0f", 1e3, cols=cols)
    row("import+build+first GET", "startup", "ready_s", ".0f", 1e3, cols=cols)
    row("whole process wall", "startup", "process_wall_s", ".0f", 1e3, cols=cols)
    row("whole process CPU (user+sys)", "startup", "cpu_s", ".0f", 1e3, cols=cols)
    row("RSS after import (MiB)", "startup", "rss_import_kib", ".1f", 1 / 1024, cols=cols)
    row("RSS after first GET (MiB)", "startup", "rss_first_kib", ".1f", 1 / 1024, cols=cols)
    lines += ["", f"### Requests and throughput (median of {args.rounds} rounds, "
              "range in brackets)", "", head, sep]
    for lat in args.latencies:
        row(f"1 KiB GET, sequential, median ms/req @{lat:g} ms", "small", "median_ms", ".1f",
            latency=lat)
        row(f"1 KiB GET, sequential, p90 ms/req @{lat:g} ms", "small", "p90_ms", ".1f",
            latency=lat)
        row(f"{WHOLE_N}×4 KiB GET, {WHOLE_INFLIGHT} in flight, total ms @{lat:g} ms", "whole",
            "wall_s", ".0f", 1e3, latency=lat)
        row(f"LIST {LIST_N} keys, ms @{lat:g} ms", "list", "wall_s", ".0f", 1e3, latency=lat)
    for lat in args.throughput_latencies:
        for n in args.put_inflight:
            row(f"PUT 8×16 MiB, {n} in flight, MB/s @{lat:g} ms", "put", "mb_s", ".0f",
                latency=lat, inflight=n)
        for n in args.put_inflight:
            row(f"PUT, {n} in flight, client CPU s/100 MB @{lat:g} ms", "put",
                "cpu_per_100mb", ".2f", latency=lat, inflight=n)
        row(f"ranged GET 8×8 MiB, 8 in flight, MB/s @{lat:g} ms", "range", "mb_s", ".0f",
            latency=lat)
        row(f"ranged GET, client CPU s/100 MB @{lat:g} ms", "range", "cpu_per_100mb", ".2f",
            latency=lat)
    for lat in args.latencies:
        row(f"1 KiB GET ×50, client CPU ms/req @{lat:g} ms", "small", "cpu_s", ".2f",
            1e3 / SMALL_N, latency=lat)
        row(f"4 KiB GET ×64 (8 in flight), client CPU ms/req @{lat:g} ms", "whole", "cpu_s",
            ".2f", 1e3 / WHOLE_N, latency=lat)
        row(f"LIST {LIST_N} keys, client CPU ms @{lat:g} ms", "list", "cpu_s", ".0f", 1e3,
            latency=lat)

    # request checks
    bad = [r for r in results if r.get("check") or r.get("error")]
    lines += ["", "### Request counts (proxy)", ""]
    if not bad:
        lines.append("Every timed operation made exactly the expected requests "
                     "(1 KiB/4 KiB GETs: one GET each, no HEAD; PUT: one PUT each, no "
                     "multipart; ranged GET: one ranged GET each; LIST: one page; start-up: "
                     "one GET).")
    for r in bad:
        lines.append(f"- {r['client']} {r['op']} x{r.get('inflight', 1)} @"
                     f"{r['latency_ms']:g} ms round {r['round']}: "
                     f"{r.get('error') or r.get('check')}")
    conns = []
    for c in every:
        vals = [r["proxy"]["connections"] for r in results
                if r["client"] == c and r["op"] == "put" and "proxy" in r]
        up = [r["proxy"]["bytes_up"] / (PUT_N * PUT_SIZE) for r in results
              if r["client"] == c and r["op"] == "put" and "proxy" in r]
        if vals:
            conns.append(f"{c}: new connections during PUT ops {min(vals)}–{max(vals)}, "
                         f"bytes up / payload {med(up):.4f}")
    lines += [f"- {x}" for x in conns]
    l1 = [x[1] for x in loads]
    lines += ["", "### Machine", "",
              f"- cores: {os.cpu_count()}; 1-min load average during the run: "
              f"min {min(l1):.2f}, median {med(l1):.2f}, max {max(l1):.2f} "
              f"({len(l1)} samples)",
              f"- proxy bandwidth cap: {args.bandwidth / MiB:g} MiB/s each way",
              "- hash cost in this Python, CPU s per 100 MB: "
              + ", ".join(f"{k} {v:.3f}" for k, v in hashes.items())]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a short run: 1 round, 2 start-ups, PUT with 1 and 8 in flight, "
                        "throughput at --latency-ms only, no s3fs-unsigned")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--startup-reps", type=int, default=5)
    p.add_argument("--latency-ms", type=float, default=30.0)
    p.add_argument("--bandwidth", type=float, default=None,
                   help="proxy cap, bytes/s each way (default: the proxy's, 100 MiB/s)")
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--json", type=Path, default=None, help="write every result here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--endpoint", default=None, help=argparse.SUPPRESS)
    p.add_argument("--bucket", default=BUCKET, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.startup_reps = 1, 2
    args.put_inflight = (1, 8) if args.quick else PUT_INFLIGHT
    args.latencies = [0.0, args.latency_ms]
    # PUT and ranged GET: at 0 ms too in a full run (client CPU dominates there).
    args.throughput_latencies = [args.latency_ms] if args.quick else [0.0, args.latency_ms]
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args.worker, args.endpoint, args.bucket)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(BENCH))
    from latency_proxy import DEFAULT_BANDWIDTH, LatencyProxy

    from support.moto import MotoServer

    if args.bandwidth is None:
        args.bandwidth = DEFAULT_BANDWIDTH
    clients = [c for c in args.clients.split(",") if c in CLIENTS]
    for client in list(clients):
        if importlib.util.find_spec(client) is None:
            print(f"s3_clients_bench: {client} is not installed, left out "
                  f"(`.venv/bin/pip install {client}` to measure it)", file=sys.stderr)
            clients.remove(client)
    variants = [c for c in PUT_VARIANTS if not args.quick and c.split("-")[0] in clients]
    work = Path(tempfile.mkdtemp(prefix="s3-clients-bench-"))
    started = time.monotonic()
    with MotoServer(log_path=work / "moto.log") as server, \
            LatencyProxy(server.endpoint, latency_ms=0.0, bandwidth=args.bandwidth) as proxy:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= server.env() | {"AWS_ENDPOINT_URL": proxy.endpoint}
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")
                           and k != "AWS_ENDPOINT_URL"})
        seed(server.endpoint)
        runner = Runner(args, proxy, proxy.endpoint, server.endpoint, env, work)
        runner.log(f"seeded; work dir {work}")
        runner.startup(clients)
        runner.rounds(clients, variants)
        runner.sample_load()
    hashes = hash_costs()
    text = summarize(runner.results, clients, variants, args, runner.loads, hashes)
    text += f"\n- wall time of the run: {time.monotonic() - started:.0f} s\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: v for k, v in vars(args).items() if k != "json" and k != "markdown"},
            "loads": runner.loads, "hashes": hashes, "results": runner.results},
            default=str, indent=1))


if __name__ == "__main__":
    main()

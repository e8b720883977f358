"""bench/latency_proxy.py: requests through it reach moto unchanged (SigV4 still valid),
are counted by kind, and each costs one added round trip. A property of the benchmark's
proxy, not a timing assertion on airflow-backup."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.counting_proxy import latency_proxy_module
from support.moto import MotoServer

LATENCY_MS = 20.0

latency_proxy = latency_proxy_module()


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[Any]:
    with latency_proxy.LatencyProxy(moto_server.endpoint, latency_ms=LATENCY_MS,
                                    bandwidth=0) as p:
        yield p


def _client(endpoint: str, server: MotoServer) -> Any:
    import boto3

    env = server.env()
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _fastest(call: Callable[[], object], n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def test_requests_are_forwarded_counted_and_delayed(
        proxy: Any, moto_server: MotoServer, s3_bucket: str) -> None:
    via = _client(proxy.endpoint, moto_server)
    body = bytes(range(256)) * 4096  # 1 MiB
    via.put_object(Bucket=s3_bucket, Key="dir/obj", Body=body)
    assert via.get_object(Bucket=s3_bucket, Key="dir/obj")["Body"].read() == body
    got = via.get_object(Bucket=s3_bucket, Key="dir/obj", Range="bytes=10-19")
    assert got["Body"].read() == body[10:20]
    assert via.head_object(Bucket=s3_bucket, Key="dir/obj")["ContentLength"] == len(body)
    listed = via.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/obj"]
    via.delete_object(Bucket=s3_bucket, Key="dir/obj")

    stats = proxy.stats()
    assert stats["requests"] == {"get": 1, "get_range": 1, "put": 1, "head": 1, "list": 1,
                                 "delete": 1, "other": 0}
    assert stats["bytes_up"] > len(body) and stats["bytes_down"] > len(body)
    assert stats["connections"] == 1  # keep-alive, although moto closes after each response

    # A chunked upload (no Content-Length) is framed and forwarded as it is.
    conn = http.client.HTTPConnection("127.0.0.1", int(proxy.endpoint.rsplit(":", 1)[1]))
    conn.request("PUT", f"/{s3_bucket}/chunked", body=iter([b"a" * 70_000, b"b" * 5]),
                 encode_chunked=True)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200
    assert via.get_object(Bucket=s3_bucket, Key="chunked")["Body"].read() == (
        b"a" * 70_000 + b"b" * 5)

    proxy.reset()
    assert proxy.stats()["total_requests"] == 0

    direct = _client(moto_server.endpoint, moto_server)
    slow = _fastest(lambda: via.head_object(Bucket=s3_bucket, Key="chunked"))
    fast = _fastest(lambda: direct.head_object(Bucket=s3_bucket, Key="chunked"))
    assert slow - fast >= 2 * LATENCY_MS / 1000
    assert proxy.stats()["requests"]["head"] == 5


def test_classify() -> None:
    classify = latency_proxy.classify
    assert classify("GET", "/b?list-type=2&prefix=data%2F", {}) == "list"
    assert classify("GET", "/b", {}) == "list"
    assert classify("GET", "/b?location=", {}) == "other"
    assert classify("GET", "/b/k", {"range": "bytes=0-1"}) == "get_range"
    assert classify("PUT", "/b/k?partNumber=1&uploadId=x", {}) == "put"
    assert classify("PUT", "/b", {}) == "other"
    assert classify("POST", "/b?delete=", {}) == "other"

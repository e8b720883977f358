"""bench/latency_proxy.py in front of the session's moto server, for tests that count the S3
requests a piece of code makes (counts, never timings)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["counting_proxy", "latency_proxy_module", "requests_made"]

_PATH = Path(__file__).resolve().parents[2] / "bench" / "latency_proxy.py"


def latency_proxy_module() -> ModuleType:
    """Return bench/latency_proxy.py as a module (loaded once: it is not a package)."""
    if "latency_proxy" in sys.modules:
        return sys.modules["latency_proxy"]
    spec = importlib.util.spec_from_file_location("latency_proxy", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["latency_proxy"] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def counting_proxy(endpoint: str) -> Iterator[Any]:
    """Yield a running proxy (no latency, no bandwidth cap) in front of ``endpoint``."""
    with latency_proxy_module().LatencyProxy(endpoint, latency_ms=0, bandwidth=0) as p:
        yield p


def requests_made(proxy: Any) -> dict[str, int]:
    """Return the proxy's non-zero request counts by kind."""
    return {k: v for k, v in proxy.stats()["requests"].items() if v}

"""A local HTTP receiver for notifications (Apprise's json:// posts here)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects the JSON bodies posted to it; ``url`` is the Apprise URL to send to."""

    def __init__(self, port: int) -> None:
        self.url = f"json://127.0.0.1:{port}/notify"
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()


@contextmanager
def receiver() -> Iterator[Receiver]:
    """Run a receiver on 127.0.0.1 (free port) for the duration of the block."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with box[0].lock:
                box[0].messages.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()

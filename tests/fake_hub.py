"""A stand-in Hub endpoint on 127.0.0.1 for the hardening tests: one that stalls, one that echoes headers."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class _Handler(BaseHTTPRequestHandler):
    mode = "stall"
    released: threading.Event

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.mode == "stall":
            self.released.wait(120)  # never answers while the test runs
            return
        body = json.dumps({"error": f"Invalid credentials in Authorization header: {self.headers.get('Authorization')}"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_HEAD = _answer


@contextmanager
def fake_hub(mode: str) -> Iterator[str]:
    """Serve a fake Hub endpoint ('stall': accepts and never answers; 'echo': a 401 whose body repeats the
    Authorization header) in a thread; yields its URL."""
    released = threading.Event()
    handler = type("Handler", (_Handler,), {"mode": mode, "released": released})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        released.set()
        server.shutdown()
        server.server_close()

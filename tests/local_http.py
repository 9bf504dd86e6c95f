"""A real HTTP server on 127.0.0.1 for the scraper tests: fixture pages, generated PNGs, bad routes.

Routes (``NAME`` is any file name; every request is counted in ``server.hits[path]``):

* ``/wiki/<fixture>``: ``tests/fixtures/bulbapedia/<fixture>.html`` with ``@HOST@`` replaced by
  this server's ``127.0.0.1:port`` (so the pages' protocol-relative ``//@HOST@/...`` URLs work)
* ``/media/upload/thumb/a/ab/NAME/<N>px-NAME``: an N x (3N/4) RGBA PNG (transparent corners)
* ``/media/upload/a/ab/NAME``: the "original file", 48 x 48
* ``/flaky/NAME``: 429 with ``Retry-After: 0`` on the first request, then a PNG
* ``/retry-after/NAME``: 429 with ``Retry-After: 3`` on the first request, then a PNG
* ``/slow/NAME``: waits (up to 5 s, or until the server stops) before answering
* ``/garbage/NAME``: bytes that are no image, served as image/png
* ``/truncated/NAME``: the first half of a PNG
* ``/huge/NAME``: 50,000 bytes with a Content-Length; ``/huge-chunked/NAME``: the same without one
* ``/bomb/NAME``: a PNG header claiming 30,000 x 30,000 pixels
* ``/always500/NAME``: HTTP 500 every time
* ``/cloudflare/...``: 403 with Cloudflare's "Just a moment..." challenge page
* ``/forbidden/...``: a plain 403
* ``/empty``: an HTML page without any table
* anything else: 404
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bulbapedia"
CHALLENGE_PAGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                  b"<div id='challenge-platform'>Checking your browser</div></body></html>")


def make_png(width: int, height: int, seed: str) -> bytes:
    """A small RGBA PNG: a coloured disc on a transparent background (deterministic per seed)."""
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((1, 1, width - 2, height - 2), fill=(digest[0], digest[1], digest[2], 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header claiming ``width x height`` 1-bit pixels, with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


class LocalServer:
    """Start with ``with LocalServer() as server:``; ``server.url("/wiki/layout_2022")``."""

    def __init__(self):
        self.hits: Counter = Counter()
        self.user_agents: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                with outer._lock:
                    outer.hits[self.path] += 1
                    outer.user_agents.append(self.headers.get("User-Agent", ""))
                    count = outer.hits[self.path]
                try:
                    outer._route(self, count)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # release /slow/ handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @staticmethod
    def _send(handler, status: int, body: bytes, content_type: str = "image/png", headers=(),
              length: bool = True) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for key, value in headers:
            handler.send_header(key, value)
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _route(self, h, count: int) -> None:
        path = h.path.split("?", 1)[0]
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/wiki/"):
            page = FIXTURES / f"{path[len('/wiki/'):]}.html"
            if not page.is_file():
                return self._send(h, 404, b"no such page", "text/plain")
            body = page.read_text(encoding="utf-8").replace("@HOST@", self.host).encode("utf-8")
            return self._send(h, 200, body, "text/html; charset=UTF-8")
        match = re.fullmatch(r"/media/upload/thumb/\w/\w\w/[^/]+/(\d+)px-([^/]+)", path)
        if match:
            size = int(match.group(1))
            return self._send(h, 200, make_png(size, max(4, size * 3 // 4), match.group(2)))
        if re.fullmatch(r"/media/upload/\w/\w\w/[^/]+", path):
            return self._send(h, 200, make_png(48, 48, name))
        if path.startswith("/flaky/"):
            if count == 1:
                return self._send(h, 429, b"slow down", "text/plain", [("Retry-After", "0")])
            return self._send(h, 200, make_png(16, 16, name))
        if path.startswith("/retry-after/"):
            if count == 1:
                return self._send(h, 429, b"slow down", "text/plain", [("Retry-After", "3")])
            return self._send(h, 200, make_png(16, 16, name))
        if path.startswith("/slow/"):
            self._stop.wait(5)
            return self._send(h, 200, make_png(16, 16, name))
        if path.startswith("/garbage/"):
            return self._send(h, 200, b"\x00\x01 this is not a PNG \xff\xfe" * 40)
        if path.startswith("/truncated/"):
            data = make_png(32, 32, name)
            return self._send(h, 200, data[: len(data) // 2])
        if path.startswith("/huge/"):
            return self._send(h, 200, b"\0" * 50_000)
        if path.startswith("/huge-chunked/"):
            h.close_connection = True
            return self._send(h, 200, b"\0" * 50_000, length=False)
        if path.startswith("/bomb/"):
            return self._send(h, 200, bomb_png())
        if path.startswith("/always500/"):
            return self._send(h, 500, b"oops", "text/plain")
        if path.startswith("/cloudflare/"):
            return self._send(h, 403, CHALLENGE_PAGE, "text/html; charset=UTF-8", [("cf-mitigated", "challenge")])
        if path.startswith("/forbidden/"):
            return self._send(h, 403, b"<html><title>Forbidden</title></html>", "text/html")
        if path == "/empty":
            return self._send(h, 200, b"<html><head><title>Empty</title></head><body><p>nothing</p></body></html>",
                              "text/html; charset=UTF-8")
        return self._send(h, 404, b"not found", "text/plain")

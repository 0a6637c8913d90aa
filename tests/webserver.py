"""A real local HTTP server for attachment tests: pages, a PDF, loops, floods and stalls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = b"""<!doctype html><html><head><title>Release notes 2.4</title>
<script>var tracking = 1;</script></head><body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a> | Login</nav>
<article><h1>Release notes 2.4</h1>
<p>Version 2.4 brings attachments to the command line. The secret word is heron.</p>
<p>PDFs are read as text per page, folders respect .gitignore and URLs are fetched
with caps on size and time, which keeps a hostile server from flooding the client.</p>
<ul><li>First change.</li><li>Second change.</li></ul></article>
<footer>Copyright Example. Cookie settings</footer></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    pdf: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/article":
            self._send(ARTICLE, "text/html; charset=utf-8")
        elif path == "/plain":
            self._send("caf\u00e9 notes\n".encode(), "text/plain; charset=utf-8")
        elif path == "/doc":
            self._send(self.pdf, "application/pdf")
        elif path == "/png":
            self._send(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png")
        elif path == "/zip":
            self._send(b"PK\x03\x04\0\0", "application/zip")
        elif path == "/missing":
            self._send(b"no", "text/plain", 404)
        elif path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", f"/loop{len(path)}")
            self.end_headers()
        elif path == "/flood":  # no length, never ends
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        elif path == "/stall":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"a")
            self.wfile.flush()
            time.sleep(3)
        else:
            self._send(b"?", "text/plain", 404)


@contextmanager
def web_server(pdf: bytes = b"") -> Iterator[str]:
    """The server's base URL, served from a thread while the block runs."""
    handler = type("Handler", (_Handler,), {"pdf": pdf})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

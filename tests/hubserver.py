"""A local HTTP server that answers the way the Hugging Face hub does, for pull tests."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    """Files per repository, and what the server was asked."""

    repos: dict[str, dict[str, Path]] = field(default_factory=dict)
    cut_first_get_after: int | None = None
    lie_about_sha: bool = False
    seconds_per_mib: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    _sha: dict[Path, str] = field(default_factory=dict)

    def sha(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return "0" * 64 if self.lie_about_sha else self._sha[path]


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _file(self) -> tuple[str, Path] | None:
            for repo, files in state.repos.items():
                prefix = f"/{repo}/resolve/"
                if self.path.startswith(prefix):
                    name = self.path[len(prefix) :].split("/", 1)[-1].split("?")[0]
                    if name in files:
                        return name, files[name]
            return None

        def _json(self, body: object, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _file_headers(self, path: Path, length: int, status: int) -> None:
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{state.sha(path)}"')
            self.send_header("X-Linked-Etag", f'"{state.sha(path)}"')
            self.send_header("X-Linked-Size", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()

        def do_HEAD(self) -> None:
            state.requests.append(("HEAD", self.path, None))
            found = self._file()
            if found is None:
                self._json({"error": "Entry not found"}, 404)
                return
            self._file_headers(found[1], found[1].stat().st_size, 200)

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append(("GET", self.path, range_header))
            for repo, files in state.repos.items():
                if self.path.startswith(f"/api/models/{repo}"):
                    listing = [
                        {"type": "file", "path": name, "size": p.stat().st_size, "oid": "x"}
                        for name, p in files.items()
                    ]
                    self._json(listing if "/tree/" in self.path else {"id": repo})
                    return
            found = self._file()
            if found is None:
                self._json({"error": "Repository not found"}, 404)
                return
            path = found[1]
            data = path.read_bytes()
            start = 0
            if range_header and range_header.startswith("bytes="):
                start = int(range_header[6:].split("-")[0])
            body = data[start:]
            self._file_headers(path, len(body), 206 if start else 200)
            cut = state.cut_first_get_after
            if cut is not None:
                state.cut_first_get_after = None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if not state.seconds_per_mib:
                self.wfile.write(body)
                return
            for offset in range(0, len(body), 1 << 20):
                self.wfile.write(body[offset : offset + (1 << 20)])
                time.sleep(state.seconds_per_mib)

    return Handler


class HubServer:
    """Serves ``state`` on 127.0.0.1 at a free port until closed."""

    def __init__(self, state: HubState) -> None:
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

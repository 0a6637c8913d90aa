"""The tests' MCP server (tests/mcpserver.py) over streamable HTTP, in a process of its own."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.timing import patience

SERVER = str(Path(__file__).with_name("mcpserver.py"))
HEADER = "Authorization: Bearer s3cret-for-tests"  # what the server requires, when it does


@contextmanager
def http_server(require: str | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The server's URL on a free localhost port, and its process; stopped at the end."""
    args = ["--require", require] if require else []
    process = subprocess.Popen(
        [sys.executable, SERVER, "--http", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], patience(30))
        url = process.stdout.readline().strip() if ready else ""
        assert url.startswith("http://"), "the MCP server over HTTP did not start"
        yield url, process
    finally:
        process.kill()  # uvicorn would wait for the event streams clients left open
        process.wait()


def closed_port() -> int:
    """A localhost port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port

"""A small MCP server for the tests: one tool of each kind the client must handle.

Run as ``python tests/mcpserver.py [--exit-at-once | --silent | --prefix NAME]`` for stdio, or
``python tests/mcpserver.py --http [--require 'NAME: VALUE']`` for streamable HTTP on a free
localhost port: it prints its URL on stdout once it listens, and answers 401 to a request
without the required header.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

# Variants a test asks for by argument, so one file covers every failure at start.
if "--exit-at-once" in sys.argv:
    print("mcpserver: refusing to start", file=sys.stderr)
    sys.exit(4)
if "--silent" in sys.argv:
    time.sleep(3600)  # started, but never answers `initialize`

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("test-server")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text, prefixed."""
    return f"echo: {text}"


@server.tool()
def write_note(path: str, text: str) -> str:
    """Write a note to a file (changes something: needs approval)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return f"wrote {len(text)} characters"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def nap(seconds: float) -> str:
    """Sleep, then answer (for timeouts)."""
    time.sleep(seconds)
    return "awake"


@server.tool()
def crash() -> str:
    """Kill the server mid-call."""
    os._exit(3)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def fail() -> str:
    """Raise an error inside the tool."""
    raise ValueError("the tool failed on purpose")


@server.tool(name="read_file", annotations=ToolAnnotations(read_only_hint=True))
def read_file(path: str) -> str:
    """A name the built-in has too, to check renaming on collision."""
    return f"server read {path}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


def serve_http(required: str | None) -> None:
    import socket

    import uvicorn

    app = server.streamable_http_app()
    name, _, value = (required or "").partition(":")
    wanted = (name.strip().lower().encode(), value.strip().encode())

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if required and scope["type"] == "http" and wanted not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # requests wait in the backlog until uvicorn accepts them
    print(f"http://127.0.0.1:{listener.getsockname()[1]}/mcp", flush=True)
    uvicorn.Server(uvicorn.Config(guarded, log_level="warning")).run(sockets=[listener])


if __name__ == "__main__":
    if "--http" in sys.argv:
        flag = sys.argv.index("--require") if "--require" in sys.argv else None
        serve_http(sys.argv[flag + 1] if flag is not None else None)
    else:
        server.run()

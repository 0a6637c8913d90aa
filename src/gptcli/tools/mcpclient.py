"""MCP servers over stdio or streamable HTTP: reached on demand, driven from a background event
loop, always stopped.

Every wait here is bounded: a server that does not start, hangs, exits, crashes or refuses the
connection becomes one line (a UsageError at start, an error output for a call), never a chat
that hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from gptcli.config import McpServerSettings
from gptcli.engine.base import ToolSpec
from gptcli.errors import UsageError
from gptcli.tools.base import ToolOutput, failure, one_line

if TYPE_CHECKING:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp_types import CallToolResult
    from mcp_types import Tool as McpToolInfo

START_TIMEOUT = 10.0  # seconds for a server to start, answer `initialize` and list its tools
STOP_TIMEOUT = 10.0  # the SDK closes stdin, waits 2 s, then SIGTERM, 2 s, SIGKILL
HTTP_TIMEOUT = 10.0  # seconds to connect to an HTTP server, send a request or get a connection
INSTALL_HINT = "MCP servers need the mcp package: pip install 'gptcli[mcp]'"

T = TypeVar("T")


def require_mcp() -> None:
    """Raise a UsageError with the install command when the optional SDK is missing."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise UsageError(INSTALL_HINT)


class EventLoopThread:
    """An asyncio loop on a daemon thread; the servers of one Toolbox live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """The coroutine's result; TimeoutError (and the coroutine cancelled) after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(2.0)
        if not self._thread.is_alive():
            self.loop.close()


def _innermost(error: BaseException) -> BaseException:
    """The first real error inside the exception groups anyio's task groups wrap it in."""
    # Duck-typed: BaseExceptionGroup is a built-in only from Python 3.11.
    inner = getattr(error, "exceptions", None)
    while isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        error = inner[0]
        inner = getattr(error, "exceptions", None)
    return error


def http_headers(settings: McpServerSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The headers in the variable ``headers_env`` names: ``Name: value`` lines, as for curl -H.

    Raises UsageError for a variable that is not set or a line that is no header; the message
    never shows the value, which is a secret.
    """
    variable = settings.headers_env
    if variable is None:
        return {}
    where = f"MCP server {settings.name!r}: headers_env"
    value = environ.get(variable)
    if value is None:
        raise UsageError(f"{where}: the environment variable {variable} is not set")
    example = "one 'Name: value' a line, e.g. 'Authorization: Bearer TOKEN'"
    headers: dict[str, str] = {}
    for number, line in enumerate(value.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, text = line.partition(":")
        name, text = name.strip(), text.strip()
        if not colon or not _HEADER_NAME.fullmatch(name) or not text or _CONTROL.search(text):
            raise UsageError(
                f"{where}: line {number} of ${variable} is not a header (value not shown): "
                f"it holds headers, {example}"
            )
        headers[name] = text
    if not headers:
        raise UsageError(f"{where}: ${variable} is empty: it holds headers, {example}")
    return headers


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _reason(error: BaseException) -> str:
    import httpx2

    error = _innermost(error)
    if isinstance(error, httpx2.TimeoutException):
        return f"no answer: {one_line(str(error)) if str(error) else type(error).__name__}"
    if isinstance(error, httpx2.ConnectError):
        return f"cannot connect: {one_line(str(error))}"
    if isinstance(error, FileNotFoundError):
        return f"command not found: {error.filename or error}"
    if isinstance(error, OSError):
        return f"cannot start: {error.strerror or error}"
    text = one_line(str(error)) if str(error) else type(error).__name__
    return "it closed the connection" if text == "Connection closed" else text


class McpServer:
    """One configured server: its process or connection, its session, and the tools it offered."""

    def __init__(self, settings: McpServerSettings, loop: EventLoopThread) -> None:
        self.settings = settings
        self.name = settings.name
        self._loop = loop
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        # The server's stderr goes to a file: its chatter must not reach the user's terminal,
        # and its last line is the best explanation when it fails.
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in stop()
        self.tools: list[McpToolInfo] = []
        self._gone: str | None = None  # why the server is known to be dead
        self._ended: BaseException | None = None  # what ended the session after its start
        self._headers: dict[str, str] = {}
        self._refusal: tuple[int, str] | None = None  # the last HTTP error a request was answered

    def _stderr_size(self) -> int:
        return os.fstat(self._stderr.fileno()).st_size

    def stderr_tail(self, since: int = 0) -> str:
        """The last line the server wrote to stderr after byte ``since``, or ''."""
        fd = self._stderr.fileno()
        start = max(since, self._stderr_size() - 4000)
        data = os.pread(fd, 4000, start).decode("utf-8", errors="replace")
        lines = [line.strip() for line in data.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def _where(self) -> str:
        """The command, or the URL without credentials or query (either may hold a secret)."""
        if self.settings.url is None:
            return str(self.settings.command)
        parts = urlsplit(self.settings.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def _error(self, reason: str, since: int = 0) -> str:
        said = self.stderr_tail(since)
        return f"MCP server {self.name!r} ({self._where}): {reason}" + (
            f"; it said: {said[:300]}" if said else ""
        )

    def _refused(self, at_start: bool) -> str | None:
        """The HTTP error the server answered with, and at start what to check; None if none."""
        if self._refusal is None:
            return None
        status, phrase = self._refusal
        said = f"it answered HTTP {status} {phrase}".rstrip()
        if not at_start:
            return said
        if status in (401, 403) and self.settings.headers_env:
            return f"{said}: check the headers in ${self.settings.headers_env}"
        if status in (401, 403):
            return f"{said}: does it need headers (headers_env)?"
        return f"{said}: is the url right?" if status == 404 else said

    async def _note_refusal(self, response: httpx2.Response) -> None:
        # The SDK turns an HTTP error into a JSON-RPC error that no longer says which one.
        if response.request.method == "POST" and response.status_code >= 400:
            self._refusal = (response.status_code, response.reason_phrase)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        """The transport's read and write streams: the command's stdio, or HTTP to the url."""
        if self.settings.url is None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=str(self.settings.command),
                args=list(self.settings.args),
                env=dict(self.settings.env) or None,
                cwd=os.path.expanduser(self.settings.cwd) if self.settings.cwd else None,
            )
            async with stdio_client(params, errlog=self._stderr) as streams:
                yield streams
            return
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # No read timeout: the server's event stream may be idle for any time, and every wait
        # for an answer is bounded here (start, call, stop).
        client = httpx2.AsyncClient(
            headers=self._headers,
            timeout=httpx2.Timeout(HTTP_TIMEOUT, read=None),
            event_hooks={"response": [self._note_refusal]},
        )
        async with client, streamable_http_client(self.settings.url, http_client=client) as streams:
            yield streams

    async def _serve(self, ready: asyncio.Future[list[McpToolInfo]]) -> None:
        from mcp.client.session import ClientSession

        try:
            async with self._connect() as streams, ClientSession(*streams) as session:
                await session.initialize()
                tools = await _list_tools(session)
                self._session = session
                ready.set_result(tools)
                assert self._stop is not None
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self._ended = exc
        finally:
            self._session = None
            if not ready.done():
                ready.cancel()  # cancelled at the start timeout: nobody waits for it any more

    async def _start(self, timeout: float) -> list[McpToolInfo]:
        self._stop = asyncio.Event()
        ready: asyncio.Future[list[McpToolInfo]] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._serve(ready))
        try:
            return await asyncio.wait_for(asyncio.shield(ready), timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_TIMEOUT)
            raise

    def start(self, timeout: float | None = None) -> list[McpToolInfo]:
        """Start the server and list its tools; raises UsageError saying why it could not."""
        timeout = START_TIMEOUT if timeout is None else timeout
        self._headers = http_headers(self.settings, os.environ)
        try:
            self.tools = self._loop.run(self._start(timeout), timeout + STOP_TIMEOUT + 1)
        except (TimeoutError, asyncio.TimeoutError):
            raise UsageError(self._error(f"no answer within {timeout:g} s")) from None
        except Exception as exc:
            raise UsageError(self._error(self._refused(at_start=True) or _reason(exc))) from None
        return self.tools

    @property
    def running(self) -> bool:
        alive = self._task is not None and not self._task.done()
        return alive and self._session is not None and self._gone is None

    def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        """Call one of the server's tools; every failure is an error output."""
        session = self._session
        if session is None or not self.running:
            ended = _reason(self._ended) if self._ended else "it is not running"
            return failure(self._gone or self._error(ended))
        coroutine = session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        said = self._stderr_size()
        self._refusal = None
        try:
            result = self._loop.run(coroutine, timeout + 2)
        except TimeoutError:
            return failure(f"timed out after {timeout:g} s")
        except Exception as exc:
            return failure(self._call_error(exc, timeout, said))
        return result_output(result)

    def _call_error(self, error: Exception, timeout: float, since: int) -> str:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        if isinstance(error, MCPError) and error.code == REQUEST_TIMEOUT:
            return f"timed out after {timeout:g} s"
        closed = isinstance(error, MCPError) and error.code == CONNECTION_CLOSED
        if self.settings.url and (closed or isinstance(error, concurrent.futures.CancelledError)):
            # An HTTP transport that fails (the server went away) takes the session with it,
            # and the serve task ends with the reason, which says more than "closed".
            ended = self._wait_for_end(1.0)
            if ended is not None:
                self._gone = self._error(f"the connection failed during an earlier call: {ended}")
                return self._error(ended)
        refused = self._refused(at_start=False)
        if refused:
            return f"MCP server {self.name!r}: {refused}"
        if closed:
            self._gone = self._error("it stopped during an earlier call", since)
            return self._error("it stopped during the call", since)
        return f"MCP server {self.name!r}: {_reason(error)}"

    def _wait_for_end(self, timeout: float) -> str | None:
        """Why the session ended after its start, waiting up to ``timeout`` for it to end."""
        task = self._task
        if task is not None and not self._loop.loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.run(asyncio.wait({task}, timeout=timeout), timeout + 1)
        return _reason(self._ended) if self._ended is not None else None

    def stop(self) -> None:
        """Stop the server process (the SDK escalates to SIGKILL) or end its HTTP session."""
        task, stop = self._task, self._stop
        if task is not None and stop is not None and not self._loop.loop.is_closed():

            async def finish() -> None:
                stop.set()
                await asyncio.wait({task}, timeout=STOP_TIMEOUT)

            with contextlib.suppress(Exception):
                self._loop.run(finish(), STOP_TIMEOUT + 1)
        self._task = None
        self._stderr.close()


async def _list_tools(session: ClientSession) -> list[McpToolInfo]:
    from mcp_types import PaginatedRequestParams

    tools: list[McpToolInfo] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages forever is cut off
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def result_output(result: CallToolResult) -> ToolOutput:
    """Text content joined; other content named by its type; ``isError`` made an error output."""
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        if block.type == "text" and isinstance(text, str):
            parts.append(text)
        else:
            mime = getattr(block, "mime_type", None)
            parts.append(f"[{block.type} content{f' ({mime})' if mime else ''} not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if result.is_error:
        return failure(text or "the tool reported an error")
    return ToolOutput(text)


class McpTool:
    """One tool of an MCP server, under the name the model sees."""

    def __init__(self, server: McpServer, info: McpToolInfo, name: str) -> None:
        self._server = server
        self.remote_name = info.name
        self.source = f"mcp: {server.name}"
        self.read_only = bool(info.annotations and info.annotations.read_only_hint)
        self.spec = ToolSpec(
            name=name,
            description=one_line(info.description or info.title or info.name),
            parameters=info.input_schema,
        )

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        return self._server.call(self.remote_name, arguments, timeout)

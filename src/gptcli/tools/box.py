"""The tools enabled for one run, and the one place their calls are checked, bounded and cleaned."""

from __future__ import annotations

import atexit
import re
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gptcli.config import ToolSettings
from gptcli.engine.base import ToolCall, ToolSpec
from gptcli.errors import UsageError
from gptcli.parsing import loads_json
from gptcli.tools.base import (
    Tool,
    ToolInfo,
    ToolOutput,
    cap_text,
    clean_text,
    failure,
    one_line,
)

if TYPE_CHECKING:
    from gptcli.tools.mcpclient import EventLoopThread, McpServer

BUILT_INS = ("time", "calc", "read_file", "list_dir", "shell")


def built_in(name: str, settings: ToolSettings) -> Tool:
    """A new instance of the built-in tool ``name``."""
    if name == "time":
        from gptcli.tools.clock import TimeTool

        return TimeTool()
    if name == "calc":
        from gptcli.tools.calc import CalcTool

        return CalcTool()
    if name == "shell":
        from gptcli.tools.shell import ShellTool

        return ShellTool()
    from gptcli.tools.files import ListDirTool, ReadFileTool

    return ReadFileTool(settings.roots) if name == "read_file" else ListDirTool(settings.roots)


def model_name(name: str) -> str:
    """A name the model may call: characters outside [A-Za-z0-9_-] become _, at most 64."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "tool"


def _mcp_target(name: str, settings: ToolSettings) -> tuple[str, str | None]:
    """``mcp:SERVER`` or ``mcp:SERVER/TOOL`` split, the server checked against the config."""
    server, _, tool = name[len("mcp:") :].partition("/")
    if server not in settings.mcp_servers:
        known = ", ".join(sorted(settings.mcp_servers)) or "none configured"
        raise UsageError(
            f"unknown MCP server {server!r} in {name!r}: add [mcp.servers.{server}] to the "
            f"config file (servers: {known})"
        )
    return server, tool or None


# Toolboxes with MCP servers, closed at exit if their owner did not (an exception path that
# skipped close): no server process outlives gptcli. Registered on the first server's start.
_OPEN: weakref.WeakSet[Toolbox] = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _close_open_boxes() -> None:
    for box in list(_OPEN):
        box.close()


class Toolbox:
    """The tools enabled for one run; runs calls within limits; stops MCP servers on close."""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings
        self._tools: dict[str, Tool] = {}
        self._servers: dict[str, McpServer] = {}
        self._loop: EventLoopThread | None = None
        self._validators: dict[str, Any] = {}
        self.tolerant = False  # a server that fails to start is skipped, with a notice
        self.notices: list[str] = []

    @classmethod
    def enable(
        cls,
        names: Sequence[str],
        functions: Sequence[Path],
        settings: ToolSettings,
        tolerant: bool = False,
    ) -> Toolbox:
        """The named tools and every function of each file; raises UsageError for unknown names.

        ``tolerant`` (a chat, which should go on): an MCP server that fails to start is left
        out and its one-line reason kept in ``notices``, instead of raising.
        """
        box = cls(settings)
        box.tolerant = tolerant
        try:
            box._enable(names, functions)
        except BaseException:
            box.close()
            raise
        return box

    def _enable(self, names: Sequence[str], functions: Sequence[Path]) -> None:
        from gptcli.tools.functions import load_functions

        fixed: list[Tool] = []
        wanted: dict[str, list[str] | None] = {}  # server -> its tools, None: all
        for name in dict.fromkeys(names):
            if name in BUILT_INS:
                fixed.append(built_in(name, self.settings))
            elif name.startswith("mcp:"):
                server, only = _mcp_target(name, self.settings)
                chosen = wanted.setdefault(server, [])
                if only is None:
                    wanted[server] = None
                elif chosen is not None and only not in chosen:
                    chosen.append(only)
            else:
                known = ", ".join(BUILT_INS)
                raise UsageError(
                    f"unknown tool {name!r}: use one of {known}, mcp:SERVER or mcp:SERVER/TOOL "
                    "(functions come from --functions FILE.py)"
                )
        for index, path in enumerate(functions):
            fixed.extend(load_functions(path, index))
        for tool in fixed:
            if tool.spec.name in self._tools:
                raise UsageError(f"two tools are named {tool.spec.name!r} ({tool.source})")
            self._tools[tool.spec.name] = tool
        self._add_mcp_tools(wanted)

    def _add_mcp_tools(self, wanted: dict[str, list[str] | None]) -> None:
        """Start the servers named and add their tools, renaming only on a collision.

        A tool keeps its own name; when two enabled tools would share one, the MCP tool is
        called ``SERVER_TOOL`` instead (both, when both are MCP tools).
        """
        from gptcli.tools.mcpclient import McpTool

        pending: list[tuple[McpServer, Any]] = []
        for server_name, chosen in wanted.items():
            try:
                server = self._server(server_name)
            except UsageError as exc:
                if not self.tolerant:
                    raise
                self.notices.append(exc.message)
                continue
            offered = {info.name: info for info in server.tools}
            for tool in chosen or ():
                if tool not in offered:
                    names = ", ".join(sorted(offered)) or "none"
                    raise UsageError(f"MCP server {server_name!r} has no tool {tool!r} ({names})")
            pending.extend((server, offered[t]) for t in (chosen or offered))
        counts: dict[str, int] = {}
        for _, info in pending:
            counts[model_name(info.name)] = counts.get(model_name(info.name), 0) + 1
        for server, info in pending:
            name = model_name(info.name)
            if counts[name] > 1 or name in self._tools:
                name = model_name(f"{server.name}_{info.name}")
            if name in self._tools:
                raise UsageError(f"two tools are named {name!r} (mcp: {server.name})")
            self._tools[name] = McpTool(server, info, name)

    def _server(self, name: str) -> McpServer:
        from gptcli.tools.mcpclient import EventLoopThread, McpServer, require_mcp

        if name not in self._servers:
            require_mcp()
            if not _EXIT_HOOK:
                atexit.register(_close_open_boxes)
                _EXIT_HOOK.append(True)
            _OPEN.add(self)
            if self._loop is None:
                self._loop = EventLoopThread()
            server = McpServer(self.settings.mcp_servers[name], self._loop)
            self._servers[name] = server
            try:
                server.start()
            except BaseException:
                del self._servers[name]
                server.stop()
                raise
        return self._servers[name]

    @property
    def tools(self) -> tuple[Tool, ...]:
        return tuple(self._tools.values())

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(tool.spec for tool in self._tools.values())

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def run(self, call: ToolCall) -> ToolOutput:
        """Run one call; a tool's fault (bad arguments, exception, timeout) is an error output."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return failure(f"unknown tool {call.name!r} (tools: {known})")
        arguments = self._arguments(tool, call.arguments)
        if isinstance(arguments, ToolOutput):
            return arguments
        try:
            output = tool.call(arguments, self.settings.timeout)
        except Exception as exc:
            output = failure(f"{type(exc).__name__}: {one_line(str(exc))}")
        return self._finish(output)

    def _arguments(self, tool: Tool, text: str) -> dict[str, Any] | ToolOutput:
        """The call's arguments parsed and checked against the tool's schema."""
        import json

        try:
            arguments = loads_json(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            return failure(f"the arguments are not valid JSON: {exc.msg} at character {exc.pos}")
        if not isinstance(arguments, dict):
            return failure("the arguments must be a JSON object")
        problem = self._problem(tool, arguments)
        return failure(f"invalid arguments: {problem}") if problem else arguments

    def _problem(self, tool: Tool, arguments: dict[str, Any]) -> str | None:
        import jsonschema

        validator = self._validators.get(tool.spec.name)
        if validator is None:
            schema = dict(tool.spec.parameters)
            cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError:
                cls = jsonschema.Draft202012Validator  # a server's sloppy schema: check what we can
            validator = self._validators[tool.spec.name] = cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return one_line(f"{where}: {error.message}" if where else error.message)[:500]

    def _finish(self, output: ToolOutput) -> ToolOutput:
        text = clean_text(output.text)
        if output.error:
            return ToolOutput(one_line(text)[:2000], error=True)
        text, cut = cap_text(text, self.settings.max_result_chars)
        return ToolOutput(text, truncated=cut or output.truncated)

    def close(self) -> None:
        """Stop every MCP server this box started; safe to call twice."""
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        _OPEN.discard(self)

    def __enter__(self) -> Toolbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def available_tools(functions: Sequence[Path], settings: ToolSettings) -> list[ToolInfo]:
    """Every tool that could be enabled: built-ins, functions, each configured server's tools.

    A server that cannot be started is one entry carrying its error, not a failure of the list.
    """
    infos = [_info(name, built_in(name, settings)) for name in BUILT_INS]
    for index, path in enumerate(functions):
        from gptcli.tools.functions import load_functions

        infos.extend(_info(t.spec.name, t) for t in load_functions(path, index))
    for server in settings.mcp_servers:
        infos.extend(_server_infos(server, settings))
    return infos


def _info(name: str, tool: Tool) -> ToolInfo:
    spec = tool.spec
    return ToolInfo(name, tool.source, tool.read_only, spec.description, spec.parameters)


def _server_infos(server: str, settings: ToolSettings) -> list[ToolInfo]:
    try:
        with Toolbox.enable([f"mcp:{server}"], [], settings) as box:
            return [
                _info(f"mcp:{server}/{getattr(tool, 'remote_name', tool.spec.name)}", tool)
                for tool in box.tools
            ]
    except UsageError as exc:
        return [ToolInfo(f"mcp:{server}", f"mcp: {server}", False, "", error=exc.message)]

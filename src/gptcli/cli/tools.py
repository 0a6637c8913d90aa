"""`gptcli tools …`: the tools a model may be given, and one tool's arguments."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gptcli.cli.options import FunctionsOpt, JsonOpt
from gptcli.errors import UsageError

if TYPE_CHECKING:
    from gptcli.config import ToolSettings
    from gptcli.tools import ToolInfo

tools_app = typer.Typer(
    help="List the tools a model can be given (-T), and show one's arguments.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _settings() -> ToolSettings:
    from gptcli.config import load_tool_settings
    from gptcli.paths import app_paths

    return load_tool_settings(app_paths().config_file)


def _record(info: ToolInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "source": info.source,
        "read_only": info.read_only,
        "description": info.description,
        "parameters": dict(info.parameters),
        "error": info.error,
    }


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + dot.strip()


@tools_app.command("list")
def list_tools(functions: FunctionsOpt = None, json_output: JsonOpt = False) -> None:
    """Built-in tools, the functions of --functions files and each MCP server's tools."""
    from gptcli.cli.options import print_table
    from gptcli.tools import available_tools

    infos = available_tools(functions or [], _settings())
    if json_output:
        typer.echo(json.dumps([_record(info) for info in infos], indent=1))
        return
    rows = [
        [
            info.name,
            info.source,
            "-" if info.error else "read-only" if info.read_only else "needs approval",
            f"error: {info.error}" if info.error else _first_sentence(info.description),
        ]
        for info in infos
    ]
    print_table(["tool", "source", "approval", "description"], rows)


def _find(name: str, functions: list[Path], settings: ToolSettings) -> ToolInfo:
    from gptcli.tools import available_tools

    # Only the server named is started: showing a built-in starts none.
    server = name[len("mcp:") :].partition("/")[0] if name.startswith("mcp:") else None
    servers = {k: v for k, v in settings.mcp_servers.items() if k == server}
    infos = available_tools(functions, replace(settings, mcp_servers=servers))
    for info in infos:
        if info.name == name:
            if info.error:
                raise UsageError(info.error)
            return info
    raise UsageError(f"no tool {name!r}: see `gptcli tools list` (MCP tools: mcp:SERVER/TOOL)")


@tools_app.command("show")
def show_tool(
    name: Annotated[str, typer.Argument(help="A tool, as `tools list` names it.")],
    functions: FunctionsOpt = None,
) -> None:
    """A tool's source, whether it needs approval, its description and its JSON Schema."""
    info = _find(name, functions or [], _settings())
    typer.echo(f"tool: {info.name}")
    typer.echo(f"source: {info.source}")
    typer.echo(f"approval: {'read-only' if info.read_only else 'needs approval'}")
    typer.echo(f"description: {info.description}")
    typer.echo("parameters:")
    typer.echo(json.dumps(dict(info.parameters), indent=2, ensure_ascii=False))

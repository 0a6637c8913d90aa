"""The config file: read and checked (naming the line of a mistake), and written back."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gptcli.config.options import KNOWN_KEYS, McpServerSettings, ToolSettings
from gptcli.config.values import Validator, _integer, _seconds, _text, check_value
from gptcli.errors import ConfigError
from gptcli.parsing import TOMLDecodeError, loads_toml


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _toml_error(message: str, text: str) -> str:
    """Turn tomllib's "Problem (at line 3, column 7)" into "line 3, column 7: Problem"."""
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return f"line {match[1]}, column {match[2]}: {message[: match.start()]}"
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        return f"line {max(line, 1)} (end of file): {message[: match.start()]}"
    return message


def load_config_file(path: Path) -> dict[str, Any]:
    """Read and validate the config file; a missing file is an empty config."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
        data = loads_toml(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start})") from exc
    except TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}, {_toml_error(str(exc), text)}") from exc
    checked: dict[str, Any] = {}
    if "tools" in data or "mcp" in data:
        checked["tools"] = _check_tools(data.pop("tools", {}), data.pop("mcp", {}), path, text)
    for key, value in data.items():
        line = _line_of(text, key)
        where = f"config file {path}" + (f", line {line}" if line else "")
        if key == "profiles" and isinstance(value, dict):
            checked["profiles"] = _check_profiles(value, path)
            continue
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        try:
            checked[key] = check_value(key, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} {exc}") from exc
    return checked


def _check_profiles(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    profiles: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        where = f"config file {path}, profile {name!r}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table [profiles.{name}]")
        values: dict[str, Any] = {"backend": "openai"}
        for key, value in table.items():
            if key not in KNOWN_KEYS or key == "profile":
                raise ConfigError(f"{where}: unknown setting {key!r}")
            try:
                values[key] = check_value(key, value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {key} {exc}") from exc
        profiles[name] = values
    return profiles


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValueError("must be a list of non-empty strings")
    return tuple(value)


def _string_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("must be a table of strings")
    return {str(k): v for k, v in value.items()}


def _tables(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a table of [mcp.servers.NAME] tables")
    return value


_TOOL_KEYS: dict[str, Validator] = {
    "enabled": _strings,
    "timeout": _seconds,
    "max_result_chars": _integer(100),
    "roots": lambda v: tuple(Path(r).expanduser() for r in _strings(v)),
    "max_calls": _integer(1, below=1000),
}


def _http_url(value: Any) -> str:
    text = str(_text(allow_empty=False)(value))
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = urlsplit(""), False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(f"must be an http:// or https:// URL, not {text!r}")
    return text


def _variable_name(value: Any) -> str:
    text = str(_text(allow_empty=False)(value))
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ValueError(
            "must name an environment variable (letters, digits, _) holding the headers"
        )
    return text


_SERVER_KEYS: dict[str, Validator] = {
    "command": _text(allow_empty=False),
    "args": _strings,
    "env": _string_table,
    "cwd": _text(allow_empty=False),
    "url": _http_url,
    "headers_env": _variable_name,
}
_STDIO_ONLY = ("args", "env", "cwd")


def _check_table(
    raw: Any, table: str, validators: Mapping[str, Validator], where: Callable[[str], str]
) -> dict[str, Any]:
    """The values of ``[table]``, each checked; ``where(key)`` says where an error is."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where('')}: {table} must be a table [{table}]")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in validators:
            raise ConfigError(f"{where(key)}: unknown setting {key!r} in [{table}]")
        try:
            values[key] = validators[key](value)
        except ValueError as exc:
            raise ConfigError(f"{where(key)}: {table}.{key} {exc}") from exc
    return values


def _check_tools(tools: Any, mcp: Any, path: Path, text: str) -> ToolSettings:
    def where_in(table: str) -> Callable[[str], str]:
        def where(key: str) -> str:
            line = _line_in_table(text, table, key) if key else None
            return f"config file {path}" + (f", line {line}" if line else "")

        return where

    values = _check_table(tools, "tools", _TOOL_KEYS, where_in("tools"))
    servers = _check_table(mcp, "mcp", {"servers": _tables}, where_in("mcp")).get("servers", {})
    configured: dict[str, McpServerSettings] = {}
    for name, table in servers.items():
        where = where_in(f"mcp.servers.{name}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
            raise ConfigError(
                f"{where('')}: MCP server name {name!r} must be 1-32 letters, digits, _ or -"
            )
        server = _check_table(table, f"mcp.servers.{name}", _SERVER_KEYS, where)
        _check_transport(name, server, where)
        configured[name] = McpServerSettings(name=name, **server)
    return ToolSettings(**values, mcp_servers=configured)


def _check_transport(name: str, server: Mapping[str, Any], where: Callable[[str], str]) -> None:
    """Exactly one of ``command`` (stdio) and ``url`` (HTTP), and only the keys that go with it."""
    table = f"[mcp.servers.{name}]"
    if "command" in server and "url" in server:
        raise ConfigError(f"{where('url')}: {table} has both a command and a url: keep one")
    if "command" not in server and "url" not in server:
        raise ConfigError(
            f"{where('')}: {table} needs a command (MCP over stdio) or a url (streamable HTTP)"
        )
    if "url" in server:
        for key in _STDIO_ONLY:
            if key in server:
                raise ConfigError(f"{where(key)}: {key} goes with a command, not a url, in {table}")
    elif "headers_env" in server:
        raise ConfigError(
            f"{where('headers_env')}: headers_env goes with a url, not a command, in {table}"
        )


def _line_in_table(text: str, table: str, key: str) -> int | None:
    """The line of ``key = …`` after the ``[table]`` header (or a dotted ``table.key``)."""
    header = re.search(rf"^[ \t]*\[[ \t]*{re.escape(table)}[ \t]*\][ \t]*(#.*)?$", text, re.M)
    start = header.end() if header else 0
    found = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.M).search(text, start)
    return text.count("\n", 0, found.start()) + 1 if found else None


def config_line(config_file: Path, key: str, value: str) -> str:
    """``key = "value" in FILE, line N``: a top-level setting and where it is written."""
    try:
        line = _line_of(config_file.read_text(encoding="utf-8"), key)
    except (OSError, UnicodeDecodeError):
        line = None
    where = f"{config_file}, line {line}" if line else str(config_file)
    return f"{key} = {json_string(value)} in {where}"


def set_config_value(path: Path, key: str, value: str) -> None:
    """Set a top-level string setting in the config file, keeping everything else as written."""
    from gptcli.paths import write_private_file

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    line = f"{key} = {json_string(value)}"
    lines = text.splitlines()
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=")
    for index in range(first_table):
        if pattern.match(lines[index]):
            lines[index] = line
            break
    else:
        lines.insert(0, line)
    new_text = "\n".join(lines) + "\n"
    loads_toml(new_text)  # never write a file gptcli itself could not read back
    write_private_file(path, new_text.encode("utf-8"))


def json_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these)."""
    import json

    return json.dumps(value, ensure_ascii=False)

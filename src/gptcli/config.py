"""Typed settings, layered: command-line flags > environment > config file > defaults.

The config file is TOML at ``<config dir>/config.toml``::

    model = "smollm2"            # alias or path of the default model
    system = "You are terse."    # default system prompt
    temperature = 0.7
    top_p = 0.95
    top_k = 40
    min_p = 0.05
    repeat_penalty = 1.0
    max_tokens = 512
    seed = 42
    stop = ["###"]
    ctx = 4096
    threads = 4
    gpu_layers = "auto"          # auto (all with a GPU build, else 0), all, or a number
    vi_mode = false              # REPL key bindings
    history = true               # REPL input history file
    save = true                  # save chat sessions (false = incognito)
    on_overflow = "truncate"     # error | truncate | summarize (default: error in ask,
                                 # truncate in the chat)
    think = "auto"               # on | off | auto: a reasoning model's thinking switch

    [tools]
    enabled = ["time", "calc"]   # tools offered by default (names as for -T)
    timeout = 30                 # seconds per call
    max_result_chars = 16000     # longer results are cut, with a note
    roots = ["~/notes"]          # read_file/list_dir may read these besides the current dir
    max_calls = 8                # rounds of tool calls per answer

    [mcp.servers.files]          # an MCP server over stdio, enabled with -T mcp:files
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "."]
    env = { DEBUG = "0" }
    cwd = "~/work"

    [mcp.servers.docs]           # an MCP server over streamable HTTP (a url, not a command)
    url = "https://mcp.example.com/mcp"
    headers_env = "DOCS_MCP_HEADERS"  # the variable holds the headers: "Authorization: Bearer …"
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from gptcli.errors import ConfigError
from gptcli.parsing import TOMLDecodeError, loads_json, loads_toml

DEFAULT_MODEL = "smollm2"
ThinkMode = Literal["on", "off", "auto"]


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are chosen; the same options and seed give the same text."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF; from --schema or --grammar, never from the config file
    schema: dict[str, Any] | None = None  # the JSON schema behind `grammar`, for remote servers
    ignore_eos: bool = False  # keep generating past end-of-turn (benchmarks)
    think: ThinkMode = "auto"  # on | off | auto (the model's default): its thinking switch


@dataclass(frozen=True)
class EngineOptions:
    """How the model is loaded: context size, CPU threads and GPU offload."""

    ctx: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None


@dataclass(frozen=True)
class McpServerSettings:
    """How to reach one MCP server (``[mcp.servers.NAME]``): exactly one of a command speaking
    MCP on stdio (with its args, env and cwd) or the URL of one over streamable HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers_env: str | None = None  # the environment variable holding the headers for `url`


@dataclass(frozen=True)
class ToolSettings:
    """The ``[tools]`` and ``[mcp.servers.*]`` tables: which tools, and their limits."""

    enabled: tuple[str, ...] = ()
    timeout: float = 30.0
    max_result_chars: int = 16000
    roots: tuple[Path, ...] = ()  # besides the current directory, for read_file and list_dir
    max_calls: int = 8
    mcp_servers: Mapping[str, McpServerSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything one invocation needs to know before it loads a model."""

    model: str = DEFAULT_MODEL
    system: str | None = None
    vi_mode: bool = False
    history: bool = True
    save: bool = True
    on_overflow: str | None = None  # error | truncate | summarize; default per command
    backend: str = "local"  # local | openai
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 60.0  # seconds to connect, and between streamed chunks
    profile: str | None = None
    # Which layer named the model: "default", "config", "environment", "profile", "role"
    # or "flag"; an error about the model says where to change it.
    model_from: str = "default"
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)
    tools: ToolSettings = field(default_factory=ToolSettings)


# The keys a config file, profile, role or flag may set; each has a validator below.
# The sampling options a person sets by name (flags, config, roles, /set), in one list;
# the grammar and schema come from --schema/--grammar, ignore_eos only from its flag.
SAMPLING_KEYS = tuple(
    f.name for f in fields(SamplingOptions) if f.name not in ("grammar", "schema", "ignore_eos")
)
ENGINE_KEYS = tuple(f.name for f in fields(EngineOptions))
_SAMPLING_KEYS = frozenset(SAMPLING_KEYS)
_ENGINE_KEYS = frozenset(ENGINE_KEYS)
_TOP_KEYS = {
    "model",
    "system",
    "vi_mode",
    "history",
    "save",
    "on_overflow",
    "backend",
    "base_url",
    "api_key_env",
    "timeout",
    "profile",
}
_BOOL_KEYS = {"vi_mode", "history", "save"}
KNOWN_KEYS = frozenset(_SAMPLING_KEYS | _ENGINE_KEYS | _TOP_KEYS)


Validator = Callable[[Any], Any]


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _choice(*allowed: str) -> Validator:
    words = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"

    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be {words}")
        return str(value)

    return check


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _base_url(value: Any) -> str:
    if not _name(value).startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return str(value).rstrip("/")


def _variable(value: Any) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", _name(value)):
        raise ValueError("must be the name of an environment variable")
    return str(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError("must be a number of seconds between 0 and 3600")
    return float(value)


def _text(allow_empty: bool) -> Validator:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not allow_empty and not value.strip():
            raise ValueError("must not be empty")
        return value

    return check


def _stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s for s in value):
        raise ValueError("must be a list of non-empty strings")
    return tuple(value)


def _number(at_most_one: bool = False) -> Validator:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise ValueError("must be a finite number >= 0")
        if at_most_one and number > 1:
            raise ValueError("must be between 0 and 1")
        return number

    return check


def _integer(minimum: int, below: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if below is not None and value >= below:
            raise ValueError("must be < 2**32" if below == 2**32 else f"must be < {below}")
        return value

    return check


def _context(value: Any) -> int:
    """A context window: llama.cpp keeps its size in a uint32."""
    size: int = _integer(16)(value)
    if size >= 2**32:
        raise ValueError(f"must be at most {2**32 - 1} tokens")
    return size


def _gpu_layers(value: Any) -> int | None:
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return None
        if word == "all":
            return -1
        try:
            value = int(word)
        except ValueError:
            raise ValueError("must be auto, all or a number of layers") from None
    return int(_integer(-1)(value))


_VALIDATORS: dict[str, Validator] = {
    "vi_mode": _boolean,
    "history": _boolean,
    "save": _boolean,
    "backend": _choice("local", "openai"),
    "base_url": _base_url,
    "api_key_env": _variable,
    "profile": _name,
    "timeout": _seconds,
    "on_overflow": _choice("error", "truncate", "summarize"),
    "think": _choice("on", "off", "auto"),
    "model": _text(allow_empty=False),
    "system": _text(allow_empty=True),
    "stop": _stops,
    "temperature": _number(),
    "repeat_penalty": _number(),
    "top_p": _number(at_most_one=True),
    "min_p": _number(at_most_one=True),
    "top_k": _integer(0),
    "max_tokens": _integer(1),
    "seed": _integer(0, below=2**32),
    "ctx": _context,
    "threads": _integer(1),
    "gpu_layers": _gpu_layers,
}


def check_value(key: str, value: Any) -> Any:
    """Return ``value`` normalised for ``key``, or raise ValueError saying what is wrong."""
    return None if value is None else _VALIDATORS[key](value)


_FLOAT_KEYS = {"temperature", "top_p", "min_p", "repeat_penalty"}


def check_setting(key: str, raw: str) -> Any:
    """Parse and validate a value typed by the user (the REPL's ``/set``)."""
    text = raw.strip()
    if key in ("max_tokens", "seed") and text.lower() in ("none", "off", "default"):
        return None
    if key == "stop":
        if text.startswith("["):
            import json

            try:
                return check_value(key, loads_json(text))
            except json.JSONDecodeError:
                raise ValueError('must be a JSON list such as ["###", "END"]') from None
        return check_value(key, [text])
    try:
        value: Any = float(text) if key in _FLOAT_KEYS else int(text)
    except ValueError:
        kind = "a number" if key in _FLOAT_KEYS else "an integer"
        raise ValueError(f"must be {kind}") from None
    return check_value(key, value)


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


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    model = environ.get("GPTCLI_MODEL")
    return {"model": model} if model else {}


def resolve_settings(
    file_values: Mapping[str, Any],
    env_values: Mapping[str, Any],
    flag_values: Mapping[str, Any],
    role_values: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers: flags > role > profile > environment > file > defaults.

    ``None`` in a layer means "not given"; the profile is the config file's
    ``[profiles.NAME]`` chosen by ``profile`` (flag or file).
    """
    merged: dict[str, Any] = {}
    profiles: Mapping[str, Any] = file_values.get("profiles") or {}
    chosen = flag_values.get("profile") or file_values.get("profile")
    if chosen is not None and chosen not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"no profile {chosen!r} in the config file (profiles: {known})")
    profile_values = {**profiles.get(chosen, {}), "profile": chosen} if chosen else {}
    layers = (
        ({k: v for k, v in file_values.items() if k not in ("profiles", "tools")}, "config"),
        (env_values, "environment"),
        (profile_values, "profile"),
        ({k: v for k, v in (role_values or {}).items() if k != "tools"}, "role"),
        (flag_values, ""),
    )
    model_from = "default"
    for layer, origin in layers:
        for key, value in layer.items():
            if value is None:
                continue
            try:
                merged[key] = check_value(key, value)
            except ValueError as exc:
                label = f"--{key.replace('_', '-')}" if not origin else f"{origin} {key}"
                raise ConfigError(f"{label} {exc}") from exc
            if key == "model":
                model_from = origin or "flag"
    settings = Settings()
    sampling = replace(
        settings.sampling, **{k: v for k, v in merged.items() if k in _SAMPLING_KEYS}
    )
    engine = replace(settings.engine, **{k: v for k, v in merged.items() if k in _ENGINE_KEYS})
    top = {k: v for k, v in merged.items() if k in _TOP_KEYS}
    tools = file_values.get("tools") or ToolSettings()
    role_tools = tuple((role_values or {}).get("tools") or ())
    if role_tools:  # a role adds to the tools the config enables
        tools = replace(tools, enabled=tuple(dict.fromkeys([*tools.enabled, *role_tools])))
    return replace(
        settings, sampling=sampling, engine=engine, tools=tools, model_from=model_from, **top
    )


def load_settings(
    config_file: Path, flag_values: Mapping[str, Any], role_values: Mapping[str, Any] | None = None
) -> Settings:
    return resolve_settings(
        load_config_file(config_file), env_overrides(os.environ), flag_values, role_values
    )


def load_tool_settings(config_file: Path) -> ToolSettings:
    """The config file's ``[tools]`` and ``[mcp.servers.*]``, for commands that need no model."""
    tools = load_config_file(config_file).get("tools")
    return tools if isinstance(tools, ToolSettings) else ToolSettings()


def config_line(config_file: Path, key: str, value: str) -> str:
    """``key = "value" in FILE, line N``: a top-level setting and where it is written."""
    try:
        line = _line_of(config_file.read_text(encoding="utf-8"), key)
    except (OSError, UnicodeDecodeError):
        line = None
    where = f"{config_file}, line {line}" if line else str(config_file)
    return f"{key} = {json_string(value)} in {where}"


def where_model_is_set(settings: Settings, config_file: Path) -> str | None:
    """Where the model name in ``settings`` came from, for an error about that model
    (None when the command line named it, or it is the built-in default)."""
    if settings.model_from == "config":
        where = config_line(config_file, "model", settings.model)
        return f"{where}; gptcli models default NAME changes it"
    if settings.model_from == "environment":
        return "from GPTCLI_MODEL"
    if settings.model_from == "profile":
        return f"from profile {settings.profile!r} in {config_file}"
    if settings.model_from == "role":
        return "from the role's model"
    return None


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

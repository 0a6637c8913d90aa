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
    kv_type = "f16"              # f16 | q8_0 | q4_0 | f32: the KV cache's element type
    mmproj = "~/models/mmproj-gemma-3-4b-f16.gguf"  # a projector for images and audio
    pdf_pages = "auto"           # auto | text | images | both: a PDF for a model that sees
    vi_mode = false              # REPL key bindings
    history = true               # REPL input history file
    save = true                  # save chat sessions (false = incognito)
    on_overflow = "truncate"     # error | truncate | summarize (default: error in ask,
                                 # truncate in the chat)
    think = "auto"               # on | off | auto: a reasoning model's thinking switch
    prompt_cache = true          # reuse earlier runs' prompt prefixes (--no-cache: not now)
    prompt_cache_size = "2 GiB"  # what the prompt cache may hold on disk
    speculate = "auto"           # auto | ngram | draft | off: draft tokens from n-grams of the
                                 # text, or from the draft model
    draft = "path/to/small.gguf" # a draft model with the model's vocabulary (as for model)
    draft_max = 16               # the most tokens the draft model drafts at a time

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

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gptcli.config.file import (
    config_line,
    json_string,
    load_config_file,
    set_config_value,
)
from gptcli.config.options import (
    _ENGINE_KEYS,
    _SAMPLING_KEYS,
    _TOP_KEYS,
    DEFAULT_MODEL,
    ENGINE_KEYS,
    KNOWN_KEYS,
    SAMPLING_KEYS,
    EngineOptions,
    McpServerSettings,
    PdfPagesMode,
    SamplingOptions,
    Settings,
    SpeculateMode,
    ThinkMode,
    ToolSettings,
)
from gptcli.config.values import check_setting, check_value
from gptcli.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "ENGINE_KEYS",
    "KNOWN_KEYS",
    "SAMPLING_KEYS",
    "EngineOptions",
    "McpServerSettings",
    "PdfPagesMode",
    "SamplingOptions",
    "Settings",
    "SpeculateMode",
    "ThinkMode",
    "ToolSettings",
    "check_setting",
    "check_value",
    "config_line",
    "env_overrides",
    "json_string",
    "load_config_file",
    "load_settings",
    "load_tool_settings",
    "resolve_settings",
    "set_config_value",
    "where_model_is_set",
]


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The environment's layer: ``GPTCLI_MODEL`` and ``GPTCLI_THREADS`` (a machine shared
    with other work, or a test suite running several at once, sets the CPU threads for
    every command without a config file)."""
    values: dict[str, Any] = {}
    if model := environ.get("GPTCLI_MODEL"):
        values["model"] = model
    if threads := environ.get("GPTCLI_THREADS", "").strip():
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses; a value that
        # is not a whole number stays text, and the check says so, naming the variable.
        numeric = re.fullmatch(r"[+-]?[0-9]+", threads)
        values["threads"] = int(threads) if numeric else threads
    return values


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
                label = (
                    f"--{key.replace('_', '-')}"
                    if not origin
                    else f"GPTCLI_{key.upper()}"
                    if origin == "environment"
                    else f"{origin} {key}"
                )
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

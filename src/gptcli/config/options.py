"""The typed settings and the names a person sets them by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

DEFAULT_MODEL = "smollm2"
ThinkMode = Literal["on", "off", "auto"]
SpeculateMode = Literal["auto", "ngram", "draft", "off"]
# How a PDF reaches a model that sees: its text, its pages as images, both, or (auto) the
# text plus an image of each page with little text (attachments/pages.py).
PdfPagesMode = Literal["auto", "text", "images", "both"]


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
    # auto | ngram | draft | off: draft tokens from n-grams of the prompt and answer, or
    # from the draft model (engine/speculate.py)
    speculate: SpeculateMode = "auto"


@dataclass(frozen=True)
class EngineOptions:
    """How the model is loaded: context size, CPU threads, GPU offload, the KV cache's type,
    the multimodal projector loaded beside it (else one found beside the model,
    models/projectors.py), and a draft model."""

    ctx: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    kv_type: str | None = None  # f16 | q8_0 | q4_0 | f32; None: f16
    mmproj: str | None = None
    draft: str | None = None  # a small model of the same vocabulary to draft tokens, as -m
    draft_max: int = 16  # the most tokens it drafts at a time (llama.cpp's default)


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
    prompt_cache: bool = True  # reuse earlier runs' prompt prefixes (engine/promptcache.py)
    prompt_cache_size: int = 2 * 2**30  # bytes the prompt cache may hold on disk
    pdf_pages: PdfPagesMode = "auto"
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
    "prompt_cache",
    "prompt_cache_size",
    "pdf_pages",
}
_BOOL_KEYS = {"vi_mode", "history", "save", "prompt_cache"}
KNOWN_KEYS = frozenset(_SAMPLING_KEYS | _ENGINE_KEYS | _TOP_KEYS)

"""What an OpenAI-compatible server says about its context window, read from its own answers.

Servers say it in different places, or not at all: llama.cpp's ``llama-server`` gives the
per-slot context in ``GET /props`` (``default_generation_settings.n_ctx``), vLLM gives
``max_model_len`` for each model in ``GET /v1/models``, and llama-cpp-python's server says
nothing. When an input is too long they refuse it in their own words; ``context_refusal``
reads the three shapes in use (llama-server's ``exceed_context_size_error``, OpenAI's
``context_length_exceeded``, vLLM's "maximum context length" message).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from gptcli.parsing import loads_json

# Anything outside this range is not a context window, whatever the server says.
SMALLEST_WINDOW = 16
LARGEST_WINDOW = 1 << 24

_WINDOW_IN_TEXT = re.compile(r"maximum context length is (\d+)")
# The prompt's size, in the words of vLLM's versions, OpenAI and llama-cpp-python's server.
_PROMPT_IN_TEXT = (
    re.compile(r"(\d+) in the messages"),
    re.compile(r"has (\d+) input tokens"),
    re.compile(r"messages resulted in (\d+) tokens"),
    re.compile(r"requested (\d+) tokens"),
)


def server_root(base_url: str) -> str:
    """The server's root: the base URL without a trailing ``/v1``."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _window(value: Any) -> int | None:
    count = _count(value)
    return count if count is not None and SMALLEST_WINDOW <= count <= LARGEST_WINDOW else None


def _json_object(body: str | bytes) -> dict[str, Any] | None:
    try:
        data = loads_json(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def window_from_props(body: bytes) -> int | None:
    """llama-server's context per slot, from the body of ``GET /props``."""
    data = _json_object(body) or {}
    settings = data.get("default_generation_settings")
    return _window(settings.get("n_ctx")) if isinstance(settings, dict) else None


def window_from_models(body: bytes, model: str) -> int | None:
    """vLLM's ``max_model_len`` for ``model``, from the body of ``GET /v1/models``."""
    data = _json_object(body) or {}
    entries = data.get("data")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and entry.get("id") == model:
            return _window(entry.get("max_model_len"))
    return None


@dataclass(frozen=True)
class ContextRefusal:
    """A server's "the input does not fit": the sizes it gave, where it gave them."""

    prompt_tokens: int | None
    window: int | None


def _first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match[1])
    return None


def _refusal_in(error: dict[str, Any]) -> ContextRefusal | None:
    message = str(error.get("message") or "")
    if error.get("type") == "exceed_context_size_error":
        return ContextRefusal(_count(error.get("n_prompt_tokens")), _window(error.get("n_ctx")))
    if error.get("code") == "context_length_exceeded" or _WINDOW_IN_TEXT.search(message):
        window = _first_number((_WINDOW_IN_TEXT,), message)
        return ContextRefusal(_first_number(_PROMPT_IN_TEXT, message), _window(window))
    return None


def context_refusal(status: int, body: str | dict[str, Any]) -> ContextRefusal | None:
    """The refusal in an error answer (a body, or an error chunk of the stream), if it is one."""
    if not 400 <= status < 500:
        return None
    data = body if isinstance(body, dict) else _json_object(body)
    if data is None:
        return None
    error = data.get("error")
    # vLLM's older answers put the error's fields at the top level.
    return _refusal_in(error if isinstance(error, dict) else data)

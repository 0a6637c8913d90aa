"""Each setting's check: a value from a file, a flag or ``/set`` normalised, or why not."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from gptcli.parsing import loads_json

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


# llama.cpp's GGML_MAX_N_THREADS (ggml.h): its thread pool holds at most this many threads,
# and far more than it crash the process (a segfault, or libgomp failing to start them).
MAX_THREADS = 512


def _integer(minimum: int, below: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if below is not None and value >= below:
            raise ValueError("must be < 2**32" if below == 2**32 else f"must be <= {below - 1}")
        return value

    return check


def _context(value: Any) -> int:
    """A context window: llama.cpp keeps its size in a uint32."""
    size: int = _integer(16)(value)
    if size >= 2**32:
        raise ValueError(f"must be at most {2**32 - 1} tokens")
    return size


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _size(value: Any) -> int:
    """Bytes: an integer, or a string such as "500 MiB", "2G", "1.5 GB" (powers of 1024)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
        if match is None:
            raise ValueError('must be a number of bytes or a size such as "2 GiB"')
        return int(float(match[1]) * _UNITS[match[2]])
    return int(_integer(0)(value))


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
    "speculate": _choice("auto", "ngram", "draft", "off"),
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
    "threads": _integer(1, below=MAX_THREADS + 1),
    "gpu_layers": _gpu_layers,
    "prompt_cache": _boolean,
    "prompt_cache_size": _size,
    "kv_type": _choice("f16", "q8_0", "q4_0", "f32"),
    "mmproj": _text(allow_empty=False),
    "draft": _text(allow_empty=False),
    "draft_max": _integer(1, below=129),
    "pdf_pages": _choice("auto", "text", "images", "both"),
}


def check_value(key: str, value: Any) -> Any:
    """Return ``value`` normalised for ``key``, or raise ValueError saying what is wrong."""
    return None if value is None else _VALIDATORS[key](value)


_FLOAT_KEYS = {"temperature", "top_p", "min_p", "repeat_penalty"}
_WORD_KEYS = {"think", "speculate"}  # one of a few words, not a number


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
    if key in _WORD_KEYS:
        return check_value(key, text.lower())
    try:
        value: Any = float(text) if key in _FLOAT_KEYS else int(text)
    except ValueError:
        kind = "a number" if key in _FLOAT_KEYS else "an integer"
        raise ValueError(f"must be {kind}") from None
    return check_value(key, value)

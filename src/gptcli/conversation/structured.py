"""Structured output: a JSON schema or GBNF grammar that constrains sampling.

A schema is turned into a GBNF grammar (llama-cpp-python's converter) that
llama.cpp's grammar sampler enforces token by token; the finished answer is
still validated against the schema before it counts as a success.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptcli.engine.base import Finished
from gptcli.engine.grammar import schema_grammar
from gptcli.errors import SchemaMismatchError, UsageError
from gptcli.parsing import loads_json

__all__ = [
    "check_answer",
    "check_schema",
    "load_grammar",
    "load_schema",
    "schema_grammar",
    "validate_answer",
]

MAX_SPEC = 1024 * 1024


def _read_spec(value: str, what: str) -> str:
    stripped = value.strip()
    if stripped.startswith(("{", "[")) or "::=" in stripped:
        return value
    path = Path(value).expanduser()
    try:
        if path.stat().st_size > MAX_SPEC:
            raise UsageError(f"{what} file {path} is larger than {MAX_SPEC} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {value!r} is neither inline text nor an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc}") from None


def load_schema(value: str) -> dict[str, Any]:
    """Parse and check a JSON schema given inline or as a file path."""
    text = _read_spec(value, "schema")
    try:
        schema = loads_json(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the schema is not valid JSON: {exc}") from None
    return check_schema(schema)


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a JSON schema (an object valid under draft 2020-12)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise UsageError("the schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"invalid JSON schema: {exc.message}") from None
    return schema


def load_grammar(value: str) -> str:
    text = _read_spec(value, "grammar")
    if "root" not in text or "::=" not in text:
        raise UsageError("the grammar needs a 'root ::= ...' rule (GBNF)")
    return text


def check_answer(text: str, finished: Finished, schema: dict[str, Any]) -> None:
    """A finished answer bound to ``schema`` must be whole (not cut by the token limit)
    and conform; SchemaMismatchError (exit 5) otherwise."""
    if finished.reason == "length":
        raise SchemaMismatchError(
            f"the answer was cut at {finished.usage.completion_tokens} tokens before its JSON "
            "was complete (raise --max-tokens)"
        )
    validate_answer(text, schema)


def validate_answer(text: str, schema: dict[str, Any]) -> Any:
    """The parsed answer, or SchemaMismatchError saying why it does not conform."""
    from jsonschema import Draft202012Validator

    try:
        value = loads_json(text)
    except json.JSONDecodeError as exc:
        raise SchemaMismatchError(f"the answer is not valid JSON ({exc.msg})") from None
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise SchemaMismatchError(
            f"the answer does not match the schema at {where}: {error.message}"
        )
    return value

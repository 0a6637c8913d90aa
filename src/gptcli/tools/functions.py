"""``--functions FILE.py``: the typed, documented top-level functions of a file become tools.

A function is read-only (runs without approval) when its name is in the file's module-level
``READ_ONLY`` collection, e.g. ``READ_ONLY = {"lookup_word"}``; every other function may
change something and needs approval. The file needs no gptcli import.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
import threading
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union

from gptcli.engine.base import ToolSpec
from gptcli.errors import UsageError
from gptcli.tools.base import TOOL_NAME, ToolOutput, failure, one_line

_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    list: {"type": "array"},
    dict: {"type": "object"},
}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


class Unsupported(TypeError):
    """An annotation with no JSON Schema counterpart here."""


def schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a parameter annotated ``annotation``; raises Unsupported."""
    if annotation in _SIMPLE:
        return dict(_SIMPLE[annotation])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and len(args) == 1:
        return {"type": "array", "items": schema_of(args[0])}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": schema_of(args[1])}
    if origin is Literal and args:
        kinds = {_JSON_TYPES.get(type(value)) for value in args}
        if None in kinds:
            raise Unsupported(f"Literal{list(args)}: only str, int, float and bool values")
        schema: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1:
            schema["type"] = kinds.pop()
        return schema
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1 and len(args) == 2:
            return {"anyOf": [schema_of(present[0]), {"type": "null"}]}
        return {"anyOf": [schema_of(arg) for arg in args if arg is not type(None)]}
    raise Unsupported(getattr(annotation, "__name__", None) or str(annotation))


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and the ``Args:`` section's text per parameter."""
    text = inspect.cleandoc(doc)
    description = " ".join(text.split("\n\n", 1)[0].split())
    params: dict[str, str] = {}
    section = re.search(r"^(?:Args|Arguments|Parameters):[ \t]*\n((?:[ \t]+.*\n?|\n)*)", text, re.M)
    if section:
        current = None
        for line in section[1].splitlines():
            entry = re.match(r"^[ \t]+(\*{0,2}\w+)(?:[ \t]*\([^)]*\))?[ \t]*:[ \t]*(.*)$", line)
            if entry and (current is None or _indent(line) <= _indent(section[1])):
                current = entry[1].lstrip("*")
                params[current] = entry[2].strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
    return description, params


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


def function_spec(name: str, function: Callable[..., Any]) -> ToolSpec:
    """The spec of ``function`` from its signature and docstring; raises Unsupported."""
    if not function.__doc__ or not function.__doc__.strip():
        raise Unsupported("no docstring (its first paragraph tells the model what it does)")
    description, documented = parse_docstring(function.__doc__)
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        raise Unsupported(f"its annotations cannot be read: {one_line(str(exc))}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise Unsupported(f"*{parameter.name}: only named parameters become arguments")
        if parameter.name not in hints:
            raise Unsupported(f"parameter {parameter.name!r} has no type annotation")
        try:
            schema = schema_of(hints[parameter.name])
        except Unsupported as exc:
            raise Unsupported(f"parameter {parameter.name!r}: unsupported type {exc}") from None
        if parameter.name in documented:
            schema["description"] = documented[parameter.name]
        if parameter.default is parameter.empty:
            required.append(parameter.name)
        elif _is_json(parameter.default):
            schema["default"] = parameter.default
        properties[parameter.name] = schema
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def result_text(value: Any) -> str:
    """A return value as text: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class FunctionTool:
    """A Python function from a ``--functions`` file, run in a worker thread with a timeout."""

    def __init__(self, function: Callable[..., Any], spec: ToolSpec, path: Path, read_only: bool):
        self._function = function
        self.spec = spec
        self.source = f"functions: {path}"
        self.read_only = read_only

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        outcome: list[Any] = []

        def work() -> None:
            try:
                outcome.append((True, self._function(**arguments)))
            except BaseException as exc:  # reported as the call's error, SystemExit too
                outcome.append((False, exc))

        # A Python function cannot be killed: at the timeout the call is reported failed and
        # the daemon thread is left to finish (or to die with the process).
        worker = threading.Thread(target=work, name=f"tool {self.spec.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if not outcome:
            return failure(f"timed out after {timeout:g} s (the function is still running)")
        ok, value = outcome[0]
        if not ok:
            return failure(f"{type(value).__name__}: {value}")
        try:
            return ToolOutput(result_text(value))
        except (TypeError, ValueError) as exc:
            return failure(f"the result cannot be shown as text: {exc}")


def _load_module(path: Path, index: int) -> types.ModuleType:
    where = f"--functions {path}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    name = f"_gptcli_functions_{index}_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{where}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up there
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise UsageError(f"{where}, line {exc.lineno}: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # anything the file raises is its own error
        del sys.modules[name]
        raise UsageError(f"{where}: {type(exc).__name__}: {one_line(str(exc))}") from None
    return module


def load_functions(path: Path, index: int = 0) -> list[FunctionTool]:
    """The tools of one ``--functions`` file; raises UsageError naming what cannot be used."""
    module = _load_module(path, index)
    read_only = getattr(module, "READ_ONLY", ())
    if isinstance(read_only, str) or not all(isinstance(n, str) for n in read_only):
        raise UsageError(f"--functions {path}: READ_ONLY must be a set of function names")
    tools: list[FunctionTool] = []
    for name, function in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(function):
            continue
        if function.__module__ != module.__name__:
            continue  # imported, not defined in the file
        if not TOOL_NAME.match(name):
            raise UsageError(f"--functions {path}: {name}: a tool name is at most 64 characters")
        try:
            spec = function_spec(name, function)
        except Unsupported as exc:
            raise UsageError(f"--functions {path}: function {name}: {exc}") from None
        tools.append(FunctionTool(function, spec, path, name in read_only))
    unknown = set(read_only) - {tool.spec.name for tool in tools}
    if unknown:
        raise UsageError(f"--functions {path}: READ_ONLY names no function {sorted(unknown)[0]!r}")
    if not tools:
        raise UsageError(f"--functions {path}: defines no public function")
    return tools

"""GBNF grammars for llama.cpp's grammar sampler: JSON schemas and tool calls.

A schema becomes a grammar through llama-cpp-python's converter. A tool call is
constrained in the model's own format (engine/toolformat.py), its arguments by
the tool's schema. A call the model must make is enforced from the first token;
a call it may make is enforced lazily: the grammar waits for the format's start
marker, so the text before is free and a call, once begun, is well-formed.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gptcli.engine import native
from gptcli.engine.base import ToolSpec
from gptcli.engine.toolformat import ToolFormat
from gptcli.errors import UsageError

# JSON strings may not hold raw control characters; the converter's `char` rule
# allows them, and a model that emits a newline inside a string breaks the JSON.
_CHAR_RULE = r'char ::= [^"\\]'
_STRICT_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F]'
_RULE_NAME = re.compile(r"[^a-zA-Z0-9-]+")


def _converter() -> Any:
    grammar = native.submodule("llama_grammar")
    return grammar.SchemaConverter(
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """A grammar whose ``root`` is any JSON value the schema allows."""
    json_schema_to_gbnf = native.submodule("llama_grammar").json_schema_to_gbnf
    try:
        grammar = str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises bare exceptions for what it cannot express
        raise UsageError(f"this schema cannot be turned into a grammar: {exc}") from None
    return grammar.replace(_CHAR_RULE, _STRICT_CHAR_RULE)


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class ToolGrammar:
    """A grammar for tool calls and, when it is lazy, the patterns that switch it on.

    Each trigger is a regular expression searched in the output; the grammar applies
    from its first group on. No triggers: the grammar applies from the first token.
    """

    text: str
    triggers: tuple[str, ...] = ()


# The format's text around one call; "{name}" and "{args}" stand for the tool's name
# and its arguments' rule. Blank space is fixed where the model writes the text from
# the start, free where a trigger may have matched a model's own spacing.
_WS = "tool-ws"
_CALLS: dict[str, tuple[str, str, str]] = {
    # format: (before the call, the call, between two calls)
    "hermes": (
        '"<tool_call>\\n"',
        '"{{\\"name\\": \\"{name}\\", \\"arguments\\": " {args} "}}"',
        '"\\n</tool_call>\\n<tool_call>\\n"',
    ),
    "generic": (
        '"<tool_call>"',
        '"{{\\"name\\": \\"{name}\\", \\"arguments\\": " {args} "}}"',
        '"</tool_call>\\n<tool_call>"',
    ),
    "llama3": (
        '""',
        '"{{" tool-ws "\\"name\\"" tool-ws ":" tool-ws "\\"{name}\\"" tool-ws "," '
        'tool-ws "\\"parameters\\"" tool-ws ":" tool-ws {args} tool-ws "}}"',
        '"; "',
    ),
    "mistral": (
        '"[TOOL_CALLS]["',
        '"{{\\"name\\": \\"{name}\\", \\"arguments\\": " {args} "}}"',
        '", "',
    ),
    "mistral-args": ('"[TOOL_CALLS]"', '"{name}[ARGS]" {args}', '"[TOOL_CALLS]"'),
    "harmony": (
        '"<|channel|>commentary to=functions."',
        '"{name} <|constrain|>json<|message|>" {args}',
        '""',
    ),
}
_CLOSE = {"hermes": '"\\n</tool_call>"', "generic": '"</tool_call>"', "mistral": '"]"'}
_TRIGGERS = {
    "hermes": r"(<tool_call>)",
    "generic": r"(<tool_call>)",
    "llama3": r'^\s*(?:<\|python_tag\|>)?\s*(\{\s*"name")[\s\S]*$',
    "mistral": r"(\[TOOL_CALLS\])",
    "mistral-args": r"(\[TOOL_CALLS\])",
}
_SINGLE_CALL = ("harmony",)  # one call per message; the reply ends with it


def tool_grammar(fmt: ToolFormat, tools: Sequence[ToolSpec], choice: str) -> ToolGrammar | None:
    """The grammar for a reply that may (``auto``) or must call ``tools``; None when none
    applies (no tools, ``none``, or a lazy call in a format without a reliable trigger)."""
    if choice not in ("auto", "required"):
        tools = [t for t in tools if t.name == choice]
    if not tools or choice == "none" or (choice == "auto" and fmt not in _TRIGGERS):
        return None
    converter = _converter()
    calls = []
    try:
        for index, tool in enumerate(tools):
            schema = converter.resolve_refs(dict(tool.parameters) or {"type": "object"}, "tool")
            args = converter.visit(schema, f"tool-args-{index}-{_RULE_NAME.sub('-', tool.name)}")
            name = json.dumps(tool.name)[1:-1].replace("\\", "\\\\").replace('"', '\\"')
            calls.append(_CALLS[fmt][1].format(name=name, args=args))
    except Exception as exc:  # the converter raises bare exceptions for what it cannot express
        raise UsageError(f"a tool's parameters cannot be turned into a grammar: {exc}") from None
    before, _, between = _CALLS[fmt]
    close = _CLOSE.get(fmt, '""')
    # A forced choice asks for one call, after which only the end of the turn may follow
    # (a small model otherwise repeats it); a call the model chose may be followed by more.
    many = "" if fmt in _SINGLE_CALL or choice != "auto" else f" ({between} tool-call)*"
    rules = [
        f"root ::= {before} tool-call{many} {close}",
        "tool-call ::= " + " | ".join(calls),
        f"{_WS} ::= [ \\t\\n]{{0,8}}",
        converter.format_grammar(),
    ]
    text = "\n".join(rules).replace(_CHAR_RULE, _STRICT_CHAR_RULE)
    return ToolGrammar(text, (_TRIGGERS[fmt],) if choice == "auto" else ())


def grammar_sampler(lib: Any, vocab: Any, grammar: str | ToolGrammar) -> Any:
    """llama.cpp's grammar sampler for ``grammar`` (lazy when it has triggers).

    The parser prints its errors straight to stderr: they are shown only with --debug.
    """
    with native.quiet_stderr():
        if isinstance(grammar, str):
            sampler = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        elif grammar.triggers:
            patterns = (ctypes.c_char_p * len(grammar.triggers))(
                *(t.encode() for t in grammar.triggers)
            )
            sampler = lib.llama_sampler_init_grammar_lazy_patterns(
                vocab, grammar.text.encode(), b"root", patterns, len(grammar.triggers), None, 0
            )
        else:
            sampler = lib.llama_sampler_init_grammar(vocab, grammar.text.encode(), b"root")
    if not sampler:
        raise UsageError("the grammar does not parse (run with --debug for details)")
    return sampler

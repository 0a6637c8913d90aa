"""Tool calls out of a reply's text: a streaming parser per format (see engine/toolformat.py).

The answer text (after thinking was split off) is fed in arbitrary pieces; a
marker may be cut anywhere. Text outside calls passes on at once, holding back
only what may begin a marker; each finished call becomes a :class:`ToolCalled`,
and a reply that made calls finishes with reason ``tool_calls``.

Decisions:

- A call whose arguments are not valid JSON is still reported, with the raw text as
  its arguments, so the tool runtime can tell the model what was wrong in one line;
  a call without a recognisable name stays text.
- In the marker formats every call counts, offered or not (the runtime answers an
  unknown name); in Llama 3's bare-JSON format, where an answer that is JSON may be
  just an answer, only an object naming an offered tool with its arguments is a call.
- A hermes/generic call still open when the reply ends counts if its JSON is whole,
  and is text otherwise; formats whose calls end with the reply always count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gptcli.engine.base import Event, Finished, TextDelta, ToolCall, ToolCalled, ToolSpec
from gptcli.engine.thinking import marker_prefix_length
from gptcli.engine.toolformat import ToolFormat, new_call_id
from gptcli.parsing import loads_json

Out = TextDelta | ToolCalled
_NAME = re.compile(r'"name"\s*:\s*"([^"\\]{1,200})"')
_ARGS_KEYS = ("arguments", "parameters")


@dataclass(frozen=True)
class RawCall:
    """A call as written: its name, its arguments' text and the model's id, if any."""

    name: str
    arguments: str
    id: str | None = None


class ToolCallParser(Protocol):
    """Answer text in, text and calls out; ``flush`` at the end of the reply."""

    @property
    def calls(self) -> int: ...

    def feed(self, text: str) -> list[Out]: ...

    def flush(self) -> list[Out]: ...


def _load(text: str) -> Any:
    try:
        return loads_json(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _arguments_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # some models write the arguments as a JSON string
    return json.dumps({} if value is None else value, ensure_ascii=False)


def _from_object(value: Any) -> RawCall | None:
    """``{"name": ..., "arguments"|"parameters": {...}, "id"?: ...}`` as a call."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # the OpenAI shape, seen from some models
        value = {**value["function"], "id": value.get("id")}
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments: Any = next((value[k] for k in _ARGS_KEYS if k in value), {})
    call_id = value.get("id")
    return RawCall(name, _arguments_text(arguments), call_id if isinstance(call_id, str) else None)


def _salvaged(body: str) -> list[RawCall]:
    """A malformed call that still names its tool: reported with the raw text."""
    match = _NAME.search(body)
    return [RawCall(match.group(1), body.strip())] if match else []


def decode_object(body: str) -> list[RawCall]:
    """One JSON object (hermes, generic)."""
    call = _from_object(_load(body.strip()))
    return [call] if call else _salvaged(body)


def decode_list(body: str) -> list[RawCall]:
    """A JSON list of objects, or one object (Mistral's older form)."""
    value = _load(body.strip())
    items = value if isinstance(value, list) else [value]
    calls = [c for c in map(_from_object, items) if c is not None]
    return calls if calls or value is not None else _salvaged(body)


def decode_args_form(body: str) -> list[RawCall]:
    """``name[ARGS]{...}`` or ``name[CALL_ID]id[ARGS]{...}`` (Mistral's newer form)."""
    head, found, arguments = body.partition("[ARGS]")
    if not found:
        return []
    name, _, call_id = head.partition("[CALL_ID]")
    name = name.strip()
    if not name:
        return []
    value = _load(arguments.strip())
    text = arguments.strip() if value is None else _arguments_text(value)
    return [RawCall(name, text, call_id.strip() or None)]


_RECIPIENT = re.compile(r"\bto=(?:functions\.)?([\w.\-]+)")


def decode_harmony(body: str) -> list[RawCall]:
    """A harmony message to a tool: ``... to=functions.NAME ...<|message|>{...}``."""
    header, found, arguments = body.partition("<|message|>")
    match = _RECIPIENT.search(header)
    if not found or not match:
        return []
    value = _load(arguments.strip())
    text = arguments.strip() if value is None else _arguments_text(value)
    return [RawCall(match.group(1), text)]


@dataclass(frozen=True)
class Syntax:
    """Where calls start and end in a format, and how the text between becomes calls."""

    starts: tuple[str, ...]
    ends: tuple[str, ...]  # none: a call runs to the next start or to the end of the reply
    decode: Callable[[str], list[RawCall]]
    ends_with_reply: bool = False  # a call open at the end is whole (its end marker stops)


SYNTAXES: dict[str, Syntax] = {
    "hermes": Syntax(("<tool_call>",), ("</tool_call>",), decode_object),
    "mistral": Syntax(("[TOOL_CALLS]",), (), decode_list, ends_with_reply=True),
    "mistral-args": Syntax(("[TOOL_CALLS]",), (), decode_args_form, ends_with_reply=True),
    # The thinking splitter passes a message to a tool on with its header (engine/thinking.py).
    "harmony": Syntax(
        ("<|start|>", "<|channel|>"), ("<|call|>", "<|end|>"), decode_harmony, ends_with_reply=True
    ),
}
SYNTAXES["generic"] = SYNTAXES["hermes"]


def _earliest(text: str, marks: Sequence[str], start: int = 0) -> tuple[int, str]:
    found = [(i, mark) for mark in marks if (i := text.find(mark, start)) >= 0]
    return min(found) if found else (-1, "")


def _in_string(text: str) -> bool:
    """Whether JSON text ends inside a string (where an end marker is just text)."""
    inside = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and inside:
            escaped = True
        elif char == '"':
            inside = not inside
    return inside


class MarkedCalls:
    """Calls between markers anywhere in the answer (hermes, generic, Mistral, harmony).

    Blank space after a call is dropped, so an answer of calls alone leaves no text.
    """

    def __init__(self, syntax: Syntax, fmt: ToolFormat) -> None:
        self._syntax = syntax
        self._fmt = fmt
        self._buf = ""
        self._open: str | None = None  # the start marker of the call being read
        self._after_call = False
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def feed(self, text: str) -> list[Out]:
        self._buf += text
        out: list[Out] = []
        while self._text(out) if self._open is None else self._call(out):
            pass
        return out

    def _text(self, out: list[Out]) -> bool:
        """Pass text on up to a start marker; True when a call opened."""
        if self._after_call:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return False
        at, mark = _earliest(self._buf, self._syntax.starts)
        if at >= 0:
            self._emit(out, self._buf[:at])
            self._open, self._buf = mark, self._buf[at + len(mark) :]
            return True
        keep = marker_prefix_length(self._buf, self._syntax.starts)
        self._emit(out, self._buf[: len(self._buf) - keep])
        self._buf = self._buf[len(self._buf) - keep :]
        return False

    def _emit(self, out: list[Out], text: str) -> None:
        if text:
            out.append(TextDelta(text))
            self._after_call = False

    def _call(self, out: list[Out]) -> bool:
        """Read a call up to its end; True when it ended."""
        ends = self._syntax.ends or self._syntax.starts
        at, mark = _earliest(self._buf, ends)
        while at >= 0 and _in_string(self._buf[:at]):
            at, mark = _earliest(self._buf, ends, at + 1)
        if at < 0:
            return False
        body = self._buf[:at]
        # A start that ends a call also begins the next one.
        self._buf = self._buf[at if mark in self._syntax.starts else at + len(mark) :]
        self._close(out, body, whole=True)
        return True

    def _close(self, out: list[Out], body: str, whole: bool) -> None:
        opening, self._open = self._open or "", None
        calls = self._syntax.decode(body)
        if not calls or (not whole and not self._complete(body)):
            self._emit(out, opening + body)
            return
        for raw in calls:
            call = ToolCall(raw.id or new_call_id(self._fmt), raw.name, raw.arguments)
            out.append(ToolCalled(call))
            self._calls += 1
        self._after_call = True

    def _complete(self, body: str) -> bool:
        return _load(body.strip()) is not None

    def flush(self) -> list[Out]:
        out: list[Out] = []
        if self._open is not None:
            self._close(out, self._buf, whole=self._syntax.ends_with_reply)
        elif not self._after_call:
            self._emit(out, self._buf)
        self._buf = ""
        return out


_PYTHON_TAG = "<|python_tag|>"
_CALL_HEAD = re.compile(r'\{\s*"(?:name|type)"')
_MAYBE_HEAD = re.compile(r'\{\s*(?:"(?:n(?:a(?:m(?:e)?)?)?|t(?:y(?:p(?:e)?)?)?)?)?')


class BareJsonCalls:
    """Llama 3's calls: the whole answer is JSON naming a tool, maybe after ``<|python_tag|>``.

    The answer is held only while it may still be a call; several calls may follow
    each other, separated by blank space or ``;``.
    """

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self._names = {t.name for t in tools}
        self._state = "start"
        self._buf = ""
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def feed(self, text: str) -> list[Out]:
        self._buf += text
        if self._state == "start":
            head = self._buf.lstrip()
            if head.startswith(_PYTHON_TAG):
                head = head[len(_PYTHON_TAG) :].lstrip()
            elif _PYTHON_TAG.startswith(head):
                return []
            if _CALL_HEAD.match(head):
                self._state = "call"
            elif head and not _MAYBE_HEAD.fullmatch(head):
                self._state = "text"
        if self._state == "text":
            out, self._buf = self._buf, ""
            return [TextDelta(out)] if out else []
        return []

    def _decode(self, text: str) -> list[RawCall]:
        decoder = json.JSONDecoder()
        calls: list[RawCall] = []
        rest = text.strip()
        while rest:
            try:
                value, end = decoder.raw_decode(rest)
            except (json.JSONDecodeError, RecursionError):
                return calls + [c for c in _salvaged(rest) if c.name in self._names]
            call = _from_object(value)
            if call is None or call.name not in self._names:
                return []
            calls.append(call)
            rest = rest[end:].lstrip().lstrip(";").lstrip()
        return calls

    def flush(self) -> list[Out]:
        text, self._buf = self._buf, ""
        body = text.lstrip()
        body = body[len(_PYTHON_TAG) :] if body.startswith(_PYTHON_TAG) else body
        calls = self._decode(body) if self._state != "text" else []
        if not calls:
            return [TextDelta(text)] if text else []
        self._calls += len(calls)
        return [
            ToolCalled(ToolCall(c.id or new_call_id("llama3"), c.name, c.arguments)) for c in calls
        ]


def parser_for(fmt: ToolFormat, tools: Sequence[ToolSpec]) -> ToolCallParser:
    if fmt == "llama3":
        return BareJsonCalls(tools)
    return MarkedCalls(SYNTAXES[fmt], fmt)


def parse_tool_events(events: Iterator[Event], parser: ToolCallParser) -> Iterator[Event]:
    """A reply's events with the calls in its answer text taken out as :class:`ToolCalled`.

    A reply that made calls finishes with reason ``tool_calls`` unless it was interrupted.
    """
    for event in events:
        if isinstance(event, TextDelta):
            yield from parser.feed(event.text)
        elif isinstance(event, Finished):
            yield from parser.flush()
            if parser.calls and event.reason != "interrupted":
                event = replace(event, reason="tool_calls")
            yield event
        else:
            yield event

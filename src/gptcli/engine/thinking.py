"""Thinking apart from the answer: recognising a model's format and splitting its output.

Reasoning models write a thinking part before the answer. A splitter turns the
raw text of a reply, fed in arbitrary pieces (a tag may be cut anywhere), into
:class:`ThinkingDelta` and :class:`TextDelta` parts. The formats:

- tags around the thinking at the very start of the output: ``<think>…</think>``
  (Qwen3, DeepSeek-R1 and its distills, GLM-4.5/4.6, Kimi-K2-Thinking, MiniMax-M2,
  SmolLM3, Granite 3.3), ``[THINK]…[/THINK]`` (Magistral), ``<seed:think>…</seed:think>``
  (Seed-OSS) and ``<|START_THINKING|>…<|END_THINKING|>`` (Command R7B);
- gpt-oss's harmony channels: ``<|channel|>analysis<|message|>…<|end|>`` is thinking,
  ``<|channel|>final<|message|>…`` (and any other channel) is the answer.

A template whose generation prompt already opens the thinking tag (DeepSeek-R1
distills; Qwen3 variants) makes the model start inside it; a thinking part still
open when the reply ends (cut by max_tokens) stays thinking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol

from gptcli.config import ThinkMode
from gptcli.engine.base import Event, Finished, TextDelta, ThinkingDelta

Part = TextDelta | ThinkingDelta

TAGS: dict[str, tuple[str, str]] = {
    "think": ("<think>", "</think>"),
    "mistral": ("[THINK]", "[/THINK]"),
    "seed": ("<seed:think>", "</seed:think>"),
    "command-r": ("<|START_THINKING|>", "<|END_THINKING|>"),
}
HARMONY = "harmony"
# Each format and the text in a template that names it, most specific first.
_MARKS = (
    (HARMONY, "<|channel|>"),
    ("mistral", "[THINK]"),
    ("seed", "<seed:think>"),
    ("command-r", "<|START_THINKING|>"),
)
_TOP_LEVEL = r"(?<![\w.'\"]){name}\b"


def format_of_template(text: str | None) -> str:
    """The thinking format a chat template speaks; ``think`` when it names none."""
    for name, mark in _MARKS:
        if text and mark in text:
            return name
    return "think"


def template_switches(text: str, mode: ThinkMode) -> dict[str, Any]:
    """The variables that turn a template's thinking on or off, among those it reads.

    ``enable_thinking`` (Qwen3, GLM-4.5/4.6, SmolLM3, Seed-OSS) and ``thinking``
    (Granite 3.3, DeepSeek-V3.1) are booleans; gpt-oss always thinks, and "off"
    asks it for the least (``reasoning_effort`` low).
    """
    if mode == "auto":
        return {}
    on = mode == "on"
    switches: dict[str, Any] = {}
    for name in ("enable_thinking", "thinking"):
        if re.search(_TOP_LEVEL.format(name=name), text):
            switches[name] = on
    if not on and re.search(_TOP_LEVEL.format(name="reasoning_effort"), text):
        switches["reasoning_effort"] = "low"
    return switches


def prompt_opens_thinking(prompt_tail: str, fmt: str) -> bool:
    """Whether the generation prompt (template text at its end) leaves the model inside thinking."""
    if fmt not in TAGS:
        return False
    return prompt_tail.rstrip().endswith(TAGS[fmt][0])


class Splitter(Protocol):
    """Raw reply text in, typed parts out; ``flush`` at the end of the reply."""

    @property
    def thinking(self) -> bool: ...

    def feed(self, text: str) -> list[Part]: ...

    def flush(self) -> list[Part]: ...


def marker_prefix_length(text: str, marks: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin one of ``marks``."""
    hold = 0
    for mark in marks:
        for n in range(min(len(mark) - 1, len(text)), hold, -1):
            if text.endswith(mark[:n]):
                hold = n
                break
    return hold


def _parts(kind: type[Part], text: str) -> list[Part]:
    return [kind(text)] if text else []


class TagSplitter:
    """``<open>thinking<close>answer``: the open tag counts only at the start of the output.

    Blank space around the thinking and before the answer is dropped; elsewhere
    the text is passed on exactly, so an answer without thinking is unchanged.
    """

    def __init__(self, opening: str, closing: str, inside: bool = False) -> None:
        self._open = opening
        self._close = closing
        self._state: Literal["start", "inside", "answer"] = "inside" if inside else "start"
        self._may_repeat_open = inside  # a model told it is thinking may still write the tag
        self._at_part_start = inside
        self._buf = ""

    @property
    def thinking(self) -> bool:
        return self._state == "inside"

    def feed(self, text: str) -> list[Part]:
        self._buf += text
        parts: list[Part] = []
        if self._state == "start":
            parts += self._start()
        if self._state == "inside":
            parts += self._inside()
        if self._state == "answer":
            parts += self._answer()
        return parts

    def _start(self) -> list[Part]:
        head = self._buf.lstrip()
        if head.startswith(self._open):
            self._buf = head[len(self._open) :]
            self._state = "inside"
            self._at_part_start = True
        elif not self._open.startswith(head):
            self._state = "answer"
        return []

    def _inside(self) -> list[Part]:
        if self._at_part_start:
            self._buf = self._buf.lstrip()
            if self._may_repeat_open:
                if self._open.startswith(self._buf):
                    return []  # the repeated tag, or the start of the thinking: wait
                self._may_repeat_open = False
                if self._buf.startswith(self._open):
                    self._buf = self._buf[len(self._open) :].lstrip()
            if not self._buf:
                return []
            self._at_part_start = False
        end = self._buf.find(self._close)
        if end >= 0:
            thought = self._buf[:end].rstrip()
            self._buf = self._buf[end + len(self._close) :]
            self._state = "answer"
            self._at_part_start = True
            return _parts(ThinkingDelta, thought)
        # Held back: what may begin the closing tag, and the blank space before it.
        out = self._buf[: len(self._buf) - marker_prefix_length(self._buf, (self._close,))].rstrip()
        self._buf = self._buf[len(out) :]
        return _parts(ThinkingDelta, out)

    def _answer(self) -> list[Part]:
        if self._at_part_start:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return []
            self._at_part_start = False
        out, self._buf = self._buf, ""
        return _parts(TextDelta, out)

    def flush(self) -> list[Part]:
        out, self._buf = self._buf, ""
        if self._state == "inside":
            out = out.strip() if self._at_part_start else out.rstrip()
            if self._may_repeat_open and out.startswith(self._open):
                out = out[len(self._open) :].lstrip()
            return _parts(ThinkingDelta, out)
        if self._state == "answer" and self._at_part_start:
            out = out.lstrip()
        return _parts(TextDelta, out)


_HARMONY_ENDS = ("<|end|>", "<|return|>", "<|call|>", "<|start|>")
_HARMONY_MESSAGE = "<|message|>"
_HARMONY_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_HARMONY_RECIPIENT = re.compile(r"(?:^|\s|>)to=\S")
_MAX_HEADER = 256


class HarmonySplitter:
    """gpt-oss's messages: a header up to ``<|message|>``, a body up to ``<|end|>``.

    The analysis channel is thinking, every other one is answer. Output that does
    not start with harmony markup is taken as plain answer text. A message to a
    recipient (``to=functions.NAME``, a tool call) is passed on whole, header and end
    marker included, for the tool-call parser (engine/toolcalls.py) to read.
    """

    def __init__(self) -> None:
        self._state: Literal["header", "body", "plain"] = "header"
        self._kind: type[Part] = TextDelta
        self._seen_message = False
        self._to_recipient = False
        self._pending: list[Part] = []
        self._buf = ""

    @property
    def thinking(self) -> bool:
        return self._state == "body" and self._kind is ThinkingDelta

    def feed(self, text: str) -> list[Part]:
        self._buf += text
        parts: list[Part] = []
        while True:
            if self._state == "plain":
                out, self._buf = self._buf, ""
                return parts + _parts(TextDelta, out)
            if self._state == "header":
                if not self._header():
                    return parts
            else:
                more, done = self._body()
                parts += more
                if not done:
                    return parts

    def _header(self) -> bool:
        """Read a header; False when more text is needed."""
        head = self._buf.lstrip()
        # After the prompt's "<|start|>assistant" a call may begin " to=functions.NAME".
        markup = head.startswith(("<|", "to=")) or head in ("<", "t", "to")
        if not self._seen_message and head and not markup:
            self._state = "plain"
            return True
        end = self._buf.find(_HARMONY_MESSAGE)
        if end < 0:
            if len(self._buf) > _MAX_HEADER:
                self._state = "plain"
                return True
            return False
        header = self._buf[:end].strip()
        match = _HARMONY_CHANNEL.search(header)
        self._kind = ThinkingDelta if match and match.group(1) == "analysis" else TextDelta
        self._to_recipient = _HARMONY_RECIPIENT.search(header) is not None
        self._buf = self._buf[end + len(_HARMONY_MESSAGE) :]
        self._state = "body"
        self._seen_message = True
        if self._to_recipient:
            self._kind = TextDelta
            opening = header if header.startswith("<|") else f"<|start|>assistant {header}"
            self._pending = [TextDelta(opening + _HARMONY_MESSAGE)]
        return True

    def _body(self) -> tuple[list[Part], bool]:
        opening, self._pending = self._pending, []
        found = [(i, mark) for mark in _HARMONY_ENDS if (i := self._buf.find(mark)) >= 0]
        if found:
            end, mark = min(found)
            out = self._buf[:end]
            # <|start|> begins the next header; the others only end this message.
            self._buf = self._buf[end:] if mark == "<|start|>" else self._buf[end + len(mark) :]
            self._state = "header"
            if self._to_recipient and mark != "<|start|>":
                out += mark
            return opening + _parts(self._kind, out), True
        hold = marker_prefix_length(self._buf, _HARMONY_ENDS)
        out, self._buf = self._buf[: len(self._buf) - hold], self._buf[len(self._buf) - hold :]
        return opening + _parts(self._kind, out), False

    def flush(self) -> list[Part]:
        out, self._buf = self._buf, ""
        opening, self._pending = self._pending, []
        if self._state == "body":
            return opening + _parts(self._kind, out)
        if self._state == "plain" or not out.lstrip().startswith(("<", "to=")):
            return _parts(TextDelta, out)
        return []  # a header the reply ended in: markup, not text


def splitter_for(fmt: str, inside: bool = False) -> Splitter:
    if fmt == HARMONY:
        return HarmonySplitter()
    opening, closing = TAGS.get(fmt, TAGS["think"])
    return TagSplitter(opening, closing, inside)


def split_events(events: Iterator[Event], splitter: Splitter) -> Iterator[Event]:
    """A backend's events with its text split into thinking and answer parts.

    ``Finished`` gains the number of text pieces (about one per token) that were
    thinking, unless the backend counted them itself.
    """
    pieces = 0
    for event in events:
        if isinstance(event, TextDelta):
            was = splitter.thinking
            parts = splitter.feed(event.text)
            if was or splitter.thinking or any(isinstance(p, ThinkingDelta) for p in parts):
                pieces += 1
            yield from parts
        elif isinstance(event, ThinkingDelta):
            pieces += 1
            yield event
        else:
            yield from splitter.flush()
            if isinstance(event, Finished) and not event.thinking_tokens:
                event = replace(event, thinking_tokens=pieces)
            yield event

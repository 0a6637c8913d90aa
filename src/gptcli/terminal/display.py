"""One display for every answer: its events become Markdown, plain text, JSON or JSON lines.

``ask`` and the chat build an :class:`EventDisplay` from parts (a text renderer, a
thinking sink, a tool display, what to print at the end) and hand it to the use case,
which feeds it the answer's events. Which parts a mode gets is decided here, once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from gptcli.answering.attaching import AttachmentInfo
from gptcli.answering.events import Answered
from gptcli.conversation.toolloop import AnswerEvent, ToolResult, call_record, result_record
from gptcli.engine.base import Finished, TextDelta, ThinkingDelta, ToolCall, ToolCalled
from gptcli.terminal.render import GuardedStream, MarkdownRenderer, PlainRenderer, Renderer
from gptcli.terminal.thinking import Forwarded, Ignored, LiveThinking, PlainThinking, ThinkingSink
from gptcli.terminal.tools import ConsoleTools, Hidden, StreamTools, ToolDisplay


class EventDisplay:
    """Routes an answer's events: text to a renderer, thinking to its sink, tool calls and
    results to the tool display, and the end to ``on_answered``."""

    def __init__(
        self,
        text: Renderer | None,
        thinking: ThinkingSink,
        tools: ToolDisplay,
        on_answered: Callable[[Answered], None] = lambda result: None,
    ) -> None:
        self.text = text
        self._thinking = thinking
        self._tools = tools
        self._on_answered = on_answered

    def start(self, model: str) -> None:
        if isinstance(self.text, JsonLines):
            self.text.start(model)

    def attached(self, info: AttachmentInfo) -> None:
        if isinstance(self.text, JsonLines):
            self.text.attached(info)

    def show(self, event: AnswerEvent) -> None:
        if isinstance(event, TextDelta):
            self._thinking.end()
            if self.text is not None:
                self.text.feed(event.text)
        elif isinstance(event, ThinkingDelta):
            self._thinking.feed(event.text)
        elif isinstance(event, ToolCalled):
            self._thinking.end()
            self._tools.called(event.call)
        elif isinstance(event, ToolResult):
            self._tools.result(event)
        elif isinstance(event, Finished) and isinstance(self.text, JsonLines):
            self.text.finished(event)

    def end(self) -> None:
        self._thinking.end()
        if self.text is not None:
            self.text.finish()

    def answered(self, result: Answered) -> None:
        self._on_answered(result)


class JsonLines:
    """Answer events as JSON lines: start, delta..., thinking, tool calls, usage, end."""

    def __init__(self, stream: GuardedStream) -> None:
        self._stream = stream

    def _emit(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._stream.flush()

    def start(self, model: str) -> None:
        self._emit({"type": "start", "model": model})

    def attached(self, info: AttachmentInfo) -> None:
        self._emit({"type": "attachment", **info.record()})

    def feed(self, text: str) -> None:
        self._emit({"type": "delta", "text": text})

    def feed_thinking(self, text: str) -> None:
        self._emit({"type": "thinking", "text": text})

    def called(self, call: ToolCall) -> None:
        self._emit({"type": "tool_call", **call_record(call)})

    def result(self, result: ToolResult) -> None:
        self._emit({"type": "tool_result", **result_record(result)})

    def finished(self, event: Finished) -> None:
        timings = event.timings
        self._emit(
            {
                "type": "usage",
                "prompt_tokens": event.usage.prompt_tokens,
                "completion_tokens": event.usage.completion_tokens,
                "time_to_first_token_s": round(timings.time_to_first_token, 4),
                "tokens_per_s": round(event.decode_tokens_per_second, 2),
            }
        )
        self._emit({"type": "end", "finish_reason": event.reason, "seed": event.seed})

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class OutputMode:
    """How `ask` shows its answer, as chosen on the command line."""

    json: bool = False  # one object at the end
    jsonl: bool = False  # events as they come
    plain: bool = False
    held: bool = False  # bound by a grammar: printed whole once complete (and checked)
    show_thinking: bool = False
    quiet: bool = False


def text_renderer(stream: GuardedStream, plain: bool) -> Renderer:
    """Markdown on a colour terminal, the exact text anywhere else."""
    if (
        plain
        or not stream.isatty()
        or os.environ.get("NO_COLOR")
        or os.environ.get("TERM") == "dumb"
    ):
        return PlainRenderer(stream)
    from rich.console import Console

    return MarkdownRenderer(Console(file=stream, soft_wrap=False))  # type: ignore[arg-type]


def ask_display(
    mode: OutputMode, stream: GuardedStream, stderr: IO[str], stderr_tty: bool
) -> EventDisplay:
    """The display of one `ask`: what streams where, and what is printed at the end."""
    renderer: Renderer | None = None
    if mode.jsonl:
        renderer = JsonLines(stream)
    elif not (mode.json or mode.held):
        renderer = text_renderer(stream, mode.plain)
    thinking: ThinkingSink
    tools: ToolDisplay
    if isinstance(renderer, JsonLines):
        thinking, tools = Forwarded(renderer.feed_thinking), renderer
    elif isinstance(renderer, MarkdownRenderer):
        thinking = LiveThinking(renderer.console, keep=mode.show_thinking)
        tools = ConsoleTools(renderer.console, renderer.finish)
    else:
        thinking = PlainThinking(stderr) if mode.show_thinking else Ignored()
        tools = StreamTools(stderr) if stderr_tty and not mode.quiet else Hidden()

    def answered(result: Answered) -> None:
        if mode.json:
            stream.write(json.dumps(json_result(result), ensure_ascii=False) + "\n")
        elif mode.held and not result.interrupted:
            stream.write(result.reply.text.rstrip("\n") + "\n")
        stream.flush()
        finished = result.reply.finished
        if finished is not None and finished.reason == "length" and stderr_tty and not mode.quiet:
            stderr.write(
                f"gptcli: note: the answer was cut at {finished.usage.completion_tokens} "
                "tokens (--max-tokens)\n"
            )

    return EventDisplay(renderer, thinking, tools, answered)


def json_result(result: Answered) -> dict[str, Any]:
    """`ask --json`'s one object: the text, how it ended, usage, context and timings."""
    reply, sampling, fit = result.reply, result.sampling, result.fit
    finished = reply.finished
    prompt = finished.usage.prompt_tokens if finished else 0
    completion = finished.usage.completion_tokens if finished else 0
    return {
        "text": reply.text,
        "thinking": reply.thinking,
        "model": result.model,
        "finish_reason": finished.reason if finished else "interrupted",
        "seed": finished.seed if finished else sampling.seed,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "context": {
            "window": result.window,
            "prompt_tokens": prompt,
            "room_for_answer": result.window - prompt,
            "dropped_messages": fit.dropped if fit else 0,
            "summarized_messages": fit.summarized if fit else 0,
        },
        "timings": _timings(finished),
        "tool_calls": [
            {**call_record(r.call), "result": result_record(r)} for r in reply.tool_results
        ],
        "tool_rounds": reply.rounds,
        "options": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "max_tokens": sampling.max_tokens,
            "stop": list(sampling.stop),
            "constrained": sampling.grammar is not None,
        },
        **result.extra,
    }


def _timings(finished: Finished | None) -> dict[str, Any]:
    if finished is None:
        return {}
    timings = finished.timings
    return {
        "time_to_first_token_s": round(timings.time_to_first_token, 4),
        "prompt_tokens_per_s": round(timings.prompt_tokens_per_second, 2),
        "tokens_per_s": round(finished.decode_tokens_per_second, 2),
        "prompt_s": round(timings.prompt_seconds, 4),
        "decode_s": round(timings.decode_seconds, 4),
        "cached_prompt_tokens": timings.cached_tokens,
        "drafted": timings.drafted,
        "accepted": timings.accepted,
    }

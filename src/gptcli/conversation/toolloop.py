"""Answers that call tools: the model asks, the tool runs if allowed, the result goes back.

One answer is a number of rounds: the model streams text and tool calls, the
calls run (those that may change something only with approval), their results
become ``tool`` messages, and the model is asked again, until it answers
without calling or the round limit is reached (the last round offers no tools,
so the model has to answer with what it has).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from gptcli.engine.base import (
    Cancellation,
    Event,
    Finished,
    ToolCall,
    ToolChoice,
    ToolRequest,
    ToolSpec,
    Usage,
)
from gptcli.tools.base import Tool, ToolOutput

Answer = Literal["yes", "no", "always"]
Asker = Callable[[ToolCall, Tool], Answer]
DEFAULT_MAX_ROUNDS = 8


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave back to the model (an event of the answer, after the call)."""

    call: ToolCall
    text: str
    error: bool = False
    refused: bool = False
    truncated: bool = False
    interrupted: bool = False
    seconds: float = 0.0


class ToolRunner(Protocol):
    """The enabled tools, as the loop uses them (a Toolbox)."""

    def specs(self) -> tuple[ToolSpec, ...]: ...

    def get(self, name: str) -> Tool | None: ...

    def run(self, call: ToolCall) -> ToolOutput: ...


@dataclass
class Approval:
    """Decides whether a call may run: read-only tools always; others when allowed or approved.

    ``ask`` puts the question to a person (yes, no, or always for this run);
    without it (no terminal) a call that needs approval is refused unless
    ``everything`` (--yes) or its tool is in ``allowed`` (--approve NAME).
    """

    allowed: set[str] = field(default_factory=set)
    everything: bool = False
    ask: Asker | None = None

    def refusal(self, call: ToolCall, tool: Tool) -> str | None:
        """None when the call may run, else why not (sent to the model as the call's result)."""
        if tool.read_only or self.everything or call.name in self.allowed:
            return None
        if self.ask is None:
            return (
                f"not run: {call.name} may change things and needs approval, which cannot "
                f"be asked without a terminal (allow it with --yes or --approve {call.name})"
            )
        answer = self.ask(call, tool)
        if answer == "always":
            self.allowed.add(call.name)
        if answer in ("yes", "always"):
            return None
        return "not run: the user declined this call"


@dataclass
class ToolUse:
    """The tools one answer may call, how it must call them and who approves the calls."""

    runner: ToolRunner
    choice: ToolChoice = "auto"
    max_rounds: int = DEFAULT_MAX_ROUNDS
    approval: Approval = field(default_factory=Approval)

    def request(self, rounds: int) -> ToolRequest | None:
        """What the model is offered in the round after ``rounds`` rounds of calls.

        A forced choice (``required`` or a name) holds for the first round only:
        forcing it again would loop forever. The last round may not call.
        """
        specs = self.runner.specs()
        if not specs:
            return None
        if self.choice == "none" or rounds >= self.max_rounds:
            return ToolRequest(specs, "none")
        return ToolRequest(specs, self.choice if rounds == 0 else "auto")

    def run(self, call: ToolCall, cancel: Cancellation) -> ToolResult:
        """Run one call if it is allowed; a Ctrl-C while it runs gives an interrupted result."""
        started = time.perf_counter()
        try:
            with cancel.interrupting():
                if cancel.cancelled:
                    raise KeyboardInterrupt
                tool = self.runner.get(call.name)
                refusal = self.approval.refusal(call, tool) if tool is not None else None
                if refusal is not None:
                    return ToolResult(call, refusal, error=True, refused=True)
                started = time.perf_counter()  # the tool's own time, not the person's answer
                output = self.runner.run(call)
        except KeyboardInterrupt:
            return interrupted_result(call, time.perf_counter() - started)
        took = time.perf_counter() - started
        return ToolResult(
            call, output.text, error=output.error, truncated=output.truncated, seconds=took
        )


# What an answer streams: the backend's events and, between rounds, the calls' results.
AnswerEvent = Event | ToolResult


def interrupted_result(call: ToolCall, seconds: float = 0.0) -> ToolResult:
    return ToolResult(
        call, "not finished: interrupted by the user", error=True, interrupted=True, seconds=seconds
    )


def merged(first: Finished, last: Finished, generated: int, thinking: int) -> Finished:
    """The one Finished of an answer of several rounds: the last round's, with the tokens
    generated in all rounds and the wait for the first one."""
    usage = Usage(last.usage.prompt_tokens, generated)
    timings = replace(last.timings, time_to_first_token=first.timings.time_to_first_token)
    return replace(last, usage=usage, timings=timings, thinking_tokens=thinking)


def call_record(call: ToolCall) -> dict[str, Any]:
    """A call as JSON output and session files keep it: its arguments parsed when they parse."""
    try:
        arguments: Any = json.loads(call.arguments)
    except ValueError:
        arguments = call.arguments
    return {"id": call.id, "name": call.name, "arguments": arguments}


def result_record(result: ToolResult) -> dict[str, Any]:
    record: dict[str, Any] = {"id": result.call.id, "name": result.call.name, "text": result.text}
    for flag in ("error", "refused", "truncated", "interrupted"):
        if getattr(result, flag):
            record[flag] = True
    record["seconds"] = round(result.seconds, 3)
    return record

"""The conversation: messages and turns, independent of terminals and engines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from gptcli.config import SamplingOptions
from gptcli.conversation.toolloop import (
    AnswerEvent,
    ToolResult,
    ToolUse,
    interrupted_result,
    merged,
)
from gptcli.engine.base import (
    Backend,
    Cancellation,
    Event,
    Finished,
    Message,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCalled,
)
from gptcli.errors import ContextOverflowError

TokenCounter = Callable[[Sequence[Message]], int]
ROUND_BREAK = "\n\n"  # between the texts of an answer's rounds of tool calls
SUMMARY_HEADER = "Summary of the earlier part of this conversation (written by the assistant):"


@dataclass
class Reply:
    """An answer as it was produced: its thinking, its text and how it ended.

    Only the text goes back into the history: the chat templates drop a past
    answer's thinking (or expect it dropped), so what is counted is what is sent.
    """

    text: str = ""
    finished: Finished | None = None
    thinking: str = ""
    rounds: int = 0  # rounds of tool calls before the answer
    tool_results: list[ToolResult] = field(default_factory=list)
    # The history this answer added before its last message (calls and results),
    # and that last message's own text (``text`` has all rounds' text).
    steps: list[Message] = field(default_factory=list)
    final_text: str = ""


@dataclass
class _Round:
    """What one request of an answer produced."""

    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    finished: Finished | None = None


@dataclass
class Conversation:
    """A system prompt and alternating user/assistant messages.

    ``send`` records the user's message before generation starts and the
    answer when it ends, including an interrupted partial answer, so the
    history always matches what the user saw.
    """

    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    summary: str | None = None

    def as_messages(self) -> list[Message]:
        system = self.system
        if self.summary:
            note = f"{SUMMARY_HEADER}\n{self.summary}"
            system = f"{system}\n\n{note}" if system else note
        head = [Message("system", system)] if system else []
        return head + self.messages

    def send(
        self,
        text: str,
        backend: Backend,
        options: SamplingOptions,
        cancel: Cancellation,
        reply: Reply,
        tools: ToolUse | None = None,
    ) -> Iterator[AnswerEvent]:
        """Stream the answer to ``text``; ``reply`` holds what was produced, even if interrupted.

        With ``tools``, the answer may take several rounds: the calls and their
        results go into the history between them, and are yielded as events.
        """
        self.messages.append(Message("user", text))
        return self._answer(backend, options, cancel, reply, keep_prompt=False, tools=tools)

    def regenerate(
        self,
        backend: Backend,
        options: SamplingOptions,
        cancel: Cancellation,
        reply: Reply,
        tools: ToolUse | None = None,
    ) -> Iterator[AnswerEvent]:
        """Answer the last user message again, replacing the answer it had."""
        while self.messages and self.messages[-1].role != "user":
            self.messages.pop()
        if not self.messages:
            raise ValueError("there is no message to answer again")
        return self._answer(backend, options, cancel, reply, keep_prompt=True, tools=tools)

    def _answer(
        self,
        backend: Backend,
        options: SamplingOptions,
        cancel: Cancellation,
        reply: Reply,
        keep_prompt: bool,
        tools: ToolUse | None = None,
    ) -> Iterator[AnswerEvent]:
        start = len(self.messages)
        first: Finished | None = None
        generated = thinking = 0
        while True:
            step = _Round()
            request = tools.request(reply.rounds) if tools is not None else None
            try:
                stream = backend.stream(self.as_messages(), options, cancel, request)
                yield from self._round(stream, step, reply)
            except BaseException:
                if step.text or step.calls:
                    self._add_round(step, reply)
                    self._close_calls(step.calls, reply)
                elif len(self.messages) == start and not keep_prompt:
                    self.messages.pop()  # nothing of the answer was seen
                raise
            finished = step.finished
            assert finished is not None, "a backend's stream ends with Finished"
            first = first or finished
            generated += finished.usage.completion_tokens
            thinking += finished.thinking_tokens
            reply.finished = merged(first, finished, generated, thinking)
            self._add_round(step, reply)
            if tools is None or not step.calls or finished.reason != "tool_calls":
                if finished.reason == "tool_calls":  # calls the backend announced but never made
                    reply.finished = replace(reply.finished, reason="stop")
                break
            yield from self._run_calls(step.calls, tools, cancel, reply)
            if cancel.cancelled:
                reply.finished = replace(reply.finished, reason="interrupted")
                break
        yield reply.finished

    @staticmethod
    def _round(stream: Iterator[Event], step: _Round, reply: Reply) -> Iterator[AnswerEvent]:
        """One request's events into ``step`` and ``reply``; its Finished is kept, not passed
        on: the answer's Finished comes after its last round."""
        for event in stream:
            if isinstance(event, TextDelta):
                if not step.text and reply.text and reply.rounds:
                    reply.text += ROUND_BREAK
                    yield TextDelta(ROUND_BREAK)
                step.text += event.text
                reply.text += event.text
            elif isinstance(event, ThinkingDelta):
                reply.thinking += event.text
            elif isinstance(event, ToolCalled):
                step.calls.append(event.call)
            else:
                step.finished = event
                continue
            yield event

    def _run_calls(
        self, calls: Sequence[ToolCall], tools: ToolUse, cancel: Cancellation, reply: Reply
    ) -> Iterator[AnswerEvent]:
        """Run a round's calls (each interrupted once the answer is), results into the history."""
        reply.rounds += 1
        for call in calls:
            result = tools.run(call, cancel) if not cancel.cancelled else None
            result = result or interrupted_result(call)
            self._add_result(result, reply)
            yield result

    def _add_round(self, step: _Round, reply: Reply) -> None:
        message = Message("assistant", step.text, tool_calls=tuple(step.calls))
        self.messages.append(message)
        if step.calls:
            reply.steps.append(message)
        reply.final_text = "" if step.calls else step.text

    def _add_result(self, result: ToolResult, reply: Reply) -> None:
        message = Message("tool", result.text, tool_call_id=result.call.id, name=result.call.name)
        self.messages.append(message)
        reply.steps.append(message)
        reply.tool_results.append(result)

    def _close_calls(self, calls: Sequence[ToolCall], reply: Reply) -> None:
        """After a failure between a round's calls and their results, the calls still get a
        result each, so the history stays one that templates and servers accept."""
        answered = {r.call.id for r in reply.tool_results}
        for call in calls:
            if call.id not in answered:
                self._add_result(interrupted_result(call), reply)

    def drop_to_fit(self, next_text: str, count: TokenCounter, budget: int) -> int:
        """Drop the oldest exchanges until history plus ``next_text`` fits ``budget`` tokens.

        The system prompt and the new message are always kept. Returns how many
        messages were dropped; raises ContextOverflowError if even those two do not fit.
        """
        head = self.as_messages()[: len(self.as_messages()) - len(self.messages)]
        latest = Message("user", next_text)
        kept = list(self.messages)
        while True:
            needed = count([*head, *kept, latest])
            if needed <= budget:
                break
            if not kept:
                raise ContextOverflowError(
                    f"the message is {needed} tokens with the system prompt, but only {budget} "
                    "fit the context window with room for the answer (try a larger --ctx, "
                    "--chunked for long documents, or a shorter input)",
                    needed=needed,
                    available=budget,
                )
            kept.pop(0)
            while kept and kept[0].role != "user":
                kept.pop(0)
        dropped = len(self.messages) - len(kept)
        self.messages = kept
        return dropped

    def undo(self) -> bool:
        """Drop the last exchange (the last user message and what followed it)."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                del self.messages[index:]
                return True
        return False

    def last_user_text(self) -> str | None:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), None)

    def last_answer(self) -> str | None:
        return next((m.content for m in reversed(self.messages) if m.role == "assistant"), None)

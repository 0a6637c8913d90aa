"""The conversation: messages and turns, independent of terminals and engines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from gptcli.config import SamplingOptions
from gptcli.engine.base import (
    Backend,
    Cancellation,
    Event,
    Finished,
    Message,
    TextDelta,
    ThinkingDelta,
)
from gptcli.errors import ContextOverflowError

TokenCounter = Callable[[Sequence[Message]], int]
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
    ) -> Iterator[Event]:
        """Stream the answer to ``text``; ``reply`` holds what was produced, even if interrupted."""
        self.messages.append(Message("user", text))
        return self._answer(backend, options, cancel, reply, keep_prompt=False)

    def regenerate(
        self, backend: Backend, options: SamplingOptions, cancel: Cancellation, reply: Reply
    ) -> Iterator[Event]:
        """Answer the last user message again, replacing the answer it had."""
        while self.messages and self.messages[-1].role == "assistant":
            self.messages.pop()
        if not self.messages:
            raise ValueError("there is no message to answer again")
        return self._answer(backend, options, cancel, reply, keep_prompt=True)

    def _answer(
        self,
        backend: Backend,
        options: SamplingOptions,
        cancel: Cancellation,
        reply: Reply,
        keep_prompt: bool,
    ) -> Iterator[Event]:
        try:
            for event in backend.stream(self.as_messages(), options, cancel):
                if isinstance(event, TextDelta):
                    reply.text += event.text
                elif isinstance(event, ThinkingDelta):
                    reply.thinking += event.text
                elif isinstance(event, Finished):
                    reply.finished = event
                yield event
        except BaseException:
            if not reply.text:
                if not keep_prompt:
                    self.messages.pop()
                raise
            self.messages.append(Message("assistant", reply.text))
            raise
        self.messages.append(Message("assistant", reply.text))

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
                    "or --chunked for long documents)",
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

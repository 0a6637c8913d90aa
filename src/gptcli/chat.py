"""The conversation: messages and turns, independent of terminals and engines."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from gptcli.backends.base import Backend, Cancellation, Event, Finished, Message, TextDelta
from gptcli.config import SamplingOptions


@dataclass
class Reply:
    """An answer as it was produced: its text and how it ended."""

    text: str = ""
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

    def as_messages(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
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
        try:
            for event in backend.stream(self.as_messages(), options, cancel):
                if isinstance(event, TextDelta):
                    reply.text += event.text
                else:
                    reply.finished = event
                yield event
        except BaseException:
            if not reply.text:
                self.messages.pop()
                raise
            self.messages.append(Message("assistant", reply.text))
            raise
        self.messages.append(Message("assistant", reply.text))

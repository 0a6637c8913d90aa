"""A scripted backend for unit tests of everything above the engine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gptcli.config import SamplingOptions
from gptcli.engine.base import (
    Cancellation,
    Event,
    Finished,
    FinishReason,
    Message,
    ModelDetails,
    TextDelta,
    Timings,
    ToolCall,
    ToolCalled,
    ToolRequest,
    Usage,
)


@dataclass
class ScriptedBackend:
    """Answers every prompt with the next scripted list of pieces."""

    replies: list[list[str | ToolCall]]
    seen: list[list[Message]] = field(default_factory=list)
    cancel_after: int | None = None
    offered: list[ToolRequest | None] = field(default_factory=list)

    @property
    def details(self) -> ModelDetails:
        return ModelDetails("fake", "/dev/null", "fake", "F32", 64, 64, "none")

    @property
    def notices(self) -> Sequence[str]:
        return ()

    def count_tokens(self, messages: Sequence[Message], tools: ToolRequest | None = None) -> int:
        return sum(len(m.content.split()) for m in messages)

    def token_bytes(self) -> int | None:
        return None

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        self.seen.append(list(messages))
        self.offered.append(tools)
        pieces = self.replies.pop(0)
        reason: FinishReason = "stop"
        produced = 0
        for index, piece in enumerate(pieces):
            if self.cancel_after is not None and index == self.cancel_after:
                cancel.cancel()
            if cancel.cancelled:
                reason = "interrupted"
                break
            produced += 1
            if isinstance(piece, ToolCall):
                reason = "tool_calls"
                yield ToolCalled(piece)
            else:
                yield TextDelta(piece)
        yield Finished(
            reason,
            Usage(self.count_tokens(messages), produced),
            Timings(0.01, 0.01, 0.02, 3, 0),
            seed=options.seed or 0,
        )

    def close(self) -> None:
        pass

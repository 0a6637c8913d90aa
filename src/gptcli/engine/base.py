"""The backend protocol: messages in, typed events out.

Nothing above a backend sees library-specific objects; a backend reports what
happened as the events below and raises only :class:`gptcli.errors.GptcliError`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gptcli.config import SamplingOptions
from gptcli.errors import GptcliError
from gptcli.media import MediaKind

Role = Literal["system", "user", "assistant", "tool"]
# "tool_calls": the answer ended by calling tools, whose results it waits for.
FinishReason = Literal["stop", "length", "interrupted", "tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for: which tool, with what arguments (JSON object text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    An assistant turn may carry the tool calls it made; a ``tool`` turn is the
    result of one call, tied to it by ``tool_call_id``.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None  # a tool turn's tool


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, and a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


# "auto": the model decides; "required": it must call one; "none": it may not;
# any other value is the name of the one tool it must call.
ToolChoice = str


@dataclass(frozen=True)
class ToolRequest:
    """The tools a reply may call, and whether it must."""

    tools: tuple[ToolSpec, ...]
    choice: ToolChoice = "auto"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    """Wall-clock figures of one reply, in seconds."""

    time_to_first_token: float
    prompt_seconds: float
    decode_seconds: float
    prompt_tokens_evaluated: int
    cached_tokens: int
    drafted: int = 0  # tokens guessed ahead (speculation) and verified
    accepted: int = 0  # of them, kept

    @property
    def prompt_tokens_per_second(self) -> float:
        if self.prompt_seconds <= 0:
            return 0.0
        return self.prompt_tokens_evaluated / self.prompt_seconds


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, always whole characters."""

    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of the model's thinking before its answer: shown apart, never sent back."""

    text: str


@dataclass(frozen=True)
class ToolCalled:
    """The model called a tool; the reply ends with reason ``tool_calls`` after its calls."""

    call: ToolCall


@dataclass(frozen=True)
class Finished:
    """The last event of every stream."""

    reason: FinishReason
    usage: Usage
    timings: Timings
    seed: int | None  # None when a server chose it and did not say
    decode_tokens_per_second: float = field(default=0.0)
    thinking_tokens: int = 0  # of usage.completion_tokens, about


Event = TextDelta | ThinkingDelta | ToolCalled | Finished


def new_seed() -> int:
    """A seed for an answer that was given none: below 2**31, so that every server takes it
    (some read it as a signed 32-bit int) and never llama.cpp's "random" 0xFFFFFFFF."""
    return secrets.randbelow(2**31 - 1)


@dataclass
class AnswerClock:
    """When an answer started, finished its prompt and showed its first text.

    A server does not say when it finished the prompt: without ``prefilled``,
    the prompt is taken to end at the first text.
    """

    started: float = field(default_factory=time.perf_counter)
    prefilled: float | None = None
    first_text: float | None = None

    def text_shown(self) -> None:
        if self.first_text is None:
            self.first_text = time.perf_counter()

    def finished(
        self,
        reason: FinishReason,
        usage: Usage,
        cached: int = 0,
        seed: int | None = None,
        drafts: tuple[int, int] = (0, 0),
    ) -> Finished:
        """The Finished event; ``drafts``: tokens drafted and accepted by speculation."""
        end = time.perf_counter()
        first = self.first_text or end
        decode = end - first
        produced = usage.completion_tokens
        rate = (produced - 1) / decode if produced > 1 and decode > 0 else 0.0
        return Finished(
            reason=reason,
            usage=usage,
            timings=Timings(
                time_to_first_token=first - self.started,
                prompt_seconds=(self.prefilled or first) - self.started,
                decode_seconds=decode,
                prompt_tokens_evaluated=usage.prompt_tokens - cached,
                cached_tokens=cached,
                drafted=drafts[0],
                accepted=drafts[1],
            ),
            seed=seed,
            decode_tokens_per_second=rate,
        )


class Cancellation:
    """A flag a signal handler or another thread sets to stop a reply at the next token.

    Code blocked in a network read can ask to be woken instead: inside
    ``interrupting()``, a cancel from the main thread's signal handler raises
    KeyboardInterrupt there, which that code turns into an interrupted reply.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._raise = False

    def cancel(self) -> None:
        self._event.set()
        if self._raise and threading.current_thread() is threading.main_thread():
            self._raise = False
            raise KeyboardInterrupt

    @contextmanager
    def interrupting(self) -> Iterator[None]:
        self._raise = True
        try:
            yield
        finally:
            self._raise = False

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class BatchJob:
    """One prompt of a batch to answer; ``index`` is its place in the input."""

    index: int
    messages: tuple[Message, ...]
    options: SamplingOptions


@dataclass(frozen=True)
class BatchOutcome:
    """A finished job: its text and Finished event, or the error that stopped it."""

    index: int
    text: str = ""
    finished: Finished | None = None
    error: GptcliError | None = None


@dataclass(frozen=True)
class ModelDetails:
    """Facts about the loaded model that the user may want to see."""

    name: str
    path: str
    architecture: str
    quantization: str
    context_size: int
    trained_context: int | None
    template_source: str
    kv_type: str | None = None  # the KV cache's element type, where the backend has one
    kv_bytes_per_token: int | None = None  # what one token of the window takes in it


class Backend(Protocol):
    """A loaded model that can count and answer conversations."""

    @property
    def details(self) -> ModelDetails: ...

    @property
    def notices(self) -> Sequence[str]:
        """Things the user should be told once (fallbacks taken while loading)."""
        ...

    def count_tokens(self, messages: Sequence[Message], tools: ToolRequest | None = None) -> int:
        """The prompt's size in tokens, with the tools described as ``stream`` sends them."""
        ...

    def token_bytes(self) -> int | None:
        """The most bytes of text one token can stand for, where the tokenizer guarantees a
        limit (a text of N bytes is then at least N / token_bytes tokens); None if unknown."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        """The reply to ``messages``; with ``tools``, it may end in :class:`ToolCalled` events."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class MediaFacts:
    """What media a backend takes: images, audio, and the tokens an image costs (None where
    it varies or is not known, as with a server)."""

    vision: bool
    audio: bool
    image_tokens: int | None = None
    projector: str = ""  # the projector file, or where the media go (a server)
    image_size: int | None = None  # the side of the encoder's images, where known
    known: bool = True  # False where media are sent for the server to take or refuse

    def takes(self, kind: MediaKind) -> bool:
        return self.vision if kind == "image" else self.audio

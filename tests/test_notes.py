"""Notes on the parts of a long document, taken in parallel, come back in the parts' order."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.notes import NotePrompt, take_notes
from gptcli.engine.base import Cancellation, Event, Message, ToolRequest
from gptcli.errors import GptcliError
from tests.fakes import ScriptedBackend


@dataclass
class SlowFirstBackend(ScriptedBackend):
    """Answers "notes on <prompt>"; the earlier the part, the later its answer ends."""

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        number = int(messages[-1].content.split()[-1])
        time.sleep(0.02 * max(0, 6 - number // 10))
        if number == 99:
            raise GptcliError("the server refused")
        return ScriptedBackend([[f"notes on {number} "]]).stream(messages, options, cancel)


def prompts(numbers: list[int]) -> Iterator[NotePrompt]:
    for number in numbers:
        yield NotePrompt(number // 10, (Message("user", f"part {number}"),))


def test_notes_keep_the_order_of_the_parts() -> None:
    backend = SlowFirstBackend([])
    notes = take_notes(
        prompts([10, 20, 21, 30, 40, 50]), backend, SamplingOptions(), Cancellation()
    )
    assert notes == [(1, "notes on 10"), (2, "notes on 20"), (2, "notes on 21"),
                     (3, "notes on 30"), (4, "notes on 40"), (5, "notes on 50")]  # fmt: skip


def test_no_parts_no_notes() -> None:
    assert take_notes(prompts([]), SlowFirstBackend([]), SamplingOptions(), Cancellation()) == []


def test_an_error_on_one_part_is_raised() -> None:
    with pytest.raises(GptcliError, match="refused"):
        take_notes(prompts([10, 99, 20]), SlowFirstBackend([]), SamplingOptions(), Cancellation())


def test_a_server_gets_one_request_at_a_time() -> None:
    backend = SlowFirstBackend([])
    started = time.monotonic()
    take_notes(prompts([50, 51, 52]), backend, SamplingOptions(), Cancellation())
    assert time.monotonic() - started >= 0.06  # three answers of 0.02 s, one after another


def test_cancel_is_an_interrupt() -> None:
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(KeyboardInterrupt):
        take_notes(prompts([10, 20]), SlowFirstBackend([]), SamplingOptions(), cancel)

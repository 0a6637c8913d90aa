"""Notes on the parts of a long document, taken in parallel, come back in the parts' order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.notes import NotePrompt, take_notes
from gptcli.engine.base import Cancellation, Event, Message, ToolRequest
from gptcli.errors import GptcliError
from tests.fakes import ScriptedBackend
from tests.timing import patience


@dataclass
class SlowFirstBackend(ScriptedBackend):
    """Answers "notes on <prompt>"; the earlier the part, the later its answer ends.
    Counts how many answers are streamed at once; each waits (a while) for ``meet`` of them
    to be under way, so that answers that may overlap do, however slow the machine."""

    meet: int = 1
    busy: int = 0
    most_at_once: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        number = int(messages[-1].content.split()[-1])
        with self.changed:
            self.busy += 1
            self.most_at_once = max(self.most_at_once, self.busy)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.busy >= self.meet, timeout=patience(2))
        try:
            time.sleep(0.02 * max(0, 6 - number // 10))
            if number == 99:
                raise GptcliError("the server refused")
            yield from ScriptedBackend([[f"notes on {number} "]]).stream(messages, options, cancel)
        finally:
            with self.changed:
                self.busy -= 1


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


@pytest.mark.parametrize(("parallel", "at_once"), [(None, 1), (3, 3)])
def test_a_server_gets_one_request_at_a_time(parallel: int | None, at_once: int) -> None:
    """By default; asked for three at once, the same parts overlap (the count can tell)."""
    backend = SlowFirstBackend([], meet=at_once)
    notes = take_notes(prompts([10, 11, 12]), backend, SamplingOptions(), Cancellation(), parallel)
    assert [part for part, _ in notes] == [1, 1, 1]
    assert backend.most_at_once == at_once


def test_cancel_is_an_interrupt() -> None:
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(KeyboardInterrupt):
        take_notes(prompts([10, 20]), SlowFirstBackend([]), SamplingOptions(), cancel)

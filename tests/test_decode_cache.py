"""The KV cache holds exactly the tokens the engine counts, however an answer ends.

Each generated token's decode starts before its text is checked against the stop
strings, so an answer ended by a stop string has decoded one token too many; it
must leave the cache again, or the next turn's prefix reuse would build on a
token that is not in the conversation.
"""

from __future__ import annotations

from typing import Any

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.engine.base import Cancellation

# (message, options, finish reason, answer tokens left out of the cache): the last token
# of an answer is never in it, except after end of generation, which is not a token of it.
TURNS: list[tuple[str, SamplingOptions, str, int]] = [
    (
        "Name the capital city of France.",
        SamplingOptions(temperature=0, max_tokens=40, stop=("Paris",)),
        "stop",
        1,
    ),
    (
        "Tell me a short story about a fox.",
        SamplingOptions(temperature=0, max_tokens=6),
        "length",
        1,
    ),
    ("Say hello.", SamplingOptions(temperature=0, max_tokens=200), "stop", 0),
    (
        "List five fruits, one per line.",
        SamplingOptions(temperature=0, max_tokens=60, stop=("\n",)),
        "stop",
        1,
    ),
]
LAST = "Summarise our conversation in one sentence."


@pytest.fixture
def backend(llama_backend: Any) -> Any:
    return llama_backend


def cached_positions(backend: Any) -> tuple[int, int]:
    lib = backend._lib
    memory = lib.llama_get_memory(backend.scheduler._ctx)
    return lib.llama_memory_seq_pos_min(memory, 0), lib.llama_memory_seq_pos_max(memory, 0)


def answer(conversation: Conversation, text: str, backend: Any, options: SamplingOptions) -> Reply:
    reply = Reply()
    for _ in conversation.send(text, backend, options, Cancellation(), reply):
        pass
    return reply


@pytest.mark.slow
def test_the_cache_ends_where_the_engine_counts_after_every_ending(backend: Any) -> None:
    conversation = Conversation(system="You are a helpful assistant.")
    for text, options, reason, left_out in TURNS:
        reply = answer(conversation, text, backend, options)
        finished = reply.finished
        assert finished is not None and finished.reason == reason, reply.text
        usage = finished.usage
        counted = usage.prompt_tokens + usage.completion_tokens - left_out
        assert len(backend.scheduler.cells(0)) == counted
        assert cached_positions(backend) == (0, counted - 1)
        if options.stop:
            assert not any(stop in reply.text for stop in options.stop)


@pytest.mark.slow
def test_the_turn_after_a_stop_string_answers_as_if_its_token_was_never_decoded(
    backend: Any,
) -> None:
    """The token that reaches a stop string is decoded and taken out again, unless it is the
    answer's last allowed token, which is never decoded; the next turn cannot tell the two
    apart. (An engine that answers from a cold cache may round differently, so the comparison
    is between two runs that reuse the cache the same way.)"""

    def converse(limit: int) -> tuple[Reply, Reply]:
        backend.scheduler.forget(0, 0)
        conversation = Conversation(system="You are a helpful assistant.")
        stop = SamplingOptions(temperature=0, max_tokens=limit, stop=("Paris",))
        first = answer(conversation, "Name the capital city of France.", backend, stop)
        then = SamplingOptions(temperature=0, max_tokens=24)
        return first, answer(conversation, LAST, backend, then)

    first, second = converse(40)
    assert first.finished is not None and first.finished.reason == "stop"
    produced = first.finished.usage.completion_tokens
    assert produced < 40
    exact_first, exact_second = converse(produced)
    assert exact_first.finished is not None and exact_first.finished.reason == "stop"
    assert exact_first.text == first.text
    assert second.finished is not None and exact_second.finished is not None
    assert second.finished.timings.cached_tokens == exact_second.finished.timings.cached_tokens
    assert second.text == exact_second.text

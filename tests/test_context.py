"""Overflow policies and long-document splitting, with a scripted backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import SUMMARY_HEADER, Conversation
from gptcli.conversation.context import (
    OverflowPolicy,
    PartProgress,
    chunked_messages,
    fit_conversation,
)
from gptcli.conversation.splitting import split_text
from gptcli.engine.base import Cancellation, Event, Message, ModelDetails, ToolRequest
from gptcli.errors import ContextOverflowError
from tests.fakes import ScriptedBackend

OPTIONS = SamplingOptions(max_tokens=10)


@dataclass
class WindowBackend(ScriptedBackend):
    """Counts a token per word, in a small window; answers summaries with 'SUMMARY'."""

    window: int = 100

    @property
    def details(self) -> ModelDetails:
        return ModelDetails("fake", "/dev/null", "fake", "F32", self.window, self.window, "none")

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        if not self.replies:
            self.replies.append(["SUMMARY of earlier talk"])
        return super().stream(messages, options, cancel)


def long_conversation() -> Conversation:
    conversation = Conversation(system="Be kind.")
    for n in range(6):
        conversation.messages += [
            Message("user", f"question {n} " + "word " * 8),
            Message("assistant", f"answer {n} " + "word " * 8),
        ]
    return conversation


def test_error_policy_refuses_and_changes_nothing() -> None:
    conversation = long_conversation()
    before = list(conversation.messages)
    with pytest.raises(ContextOverflowError, match="only 90 fit the 100-token context"):
        fit_conversation(
            conversation, "new " * 10, WindowBackend([]), "error", OPTIONS, Cancellation()
        )
    assert conversation.messages == before


def test_truncate_drops_oldest_exchanges_keeps_system_and_latest() -> None:
    conversation = long_conversation()
    backend = WindowBackend([])
    report = fit_conversation(
        conversation, "latest " * 10, backend, "truncate", OPTIONS, Cancellation()
    )
    assert report.dropped > 0 and report.dropped % 2 == 0
    assert conversation.system == "Be kind."
    assert conversation.messages[0].role == "user"
    assert conversation.messages[-1].content.startswith("answer 5")  # the newest are kept
    assert report.prompt_tokens <= 90
    assert report.notice() == f"context full: the {report.dropped} oldest messages were dropped"


def test_summarize_replaces_oldest_with_a_marked_summary() -> None:
    conversation = long_conversation()
    backend = WindowBackend([])
    report = fit_conversation(
        conversation, "latest " * 10, backend, "summarize", OPTIONS, Cancellation()
    )
    assert report.summarized > 0
    assert conversation.summary == "SUMMARY of earlier talk"
    system = conversation.as_messages()[0]
    assert system.role == "system"
    assert system.content.startswith("Be kind.")
    assert SUMMARY_HEADER in system.content
    assert report.prompt_tokens <= 90
    asked = " ".join(m.content for m in backend.seen[0])
    assert "question 0" in asked  # the model summarised the oldest exchange


@dataclass
class EngineWindowBackend(WindowBackend):
    """Refuses a request whose prompt leaves less than --max-tokens free, as the engine does."""

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        needed = self.count_tokens(messages) + (options.max_tokens or 1)
        if needed > self.window:
            raise ContextOverflowError(
                f"{needed} tokens asked of a {self.window}-token window",
                needed=needed,
                available=self.window,
            )
        return super().stream(messages, options, cancel, tools)


def test_summarize_asks_for_a_summary_that_fits_a_small_window() -> None:
    conversation = long_conversation()
    backend = EngineWindowBackend([])
    report = fit_conversation(
        conversation, "latest " * 10, backend, "summarize", OPTIONS, Cancellation()
    )
    assert report.summarized > 0
    assert conversation.summary == "SUMMARY of earlier talk"
    assert report.prompt_tokens <= 90
    assert conversation.messages  # the newest exchanges stay beside the summary


def test_summarize_without_room_for_a_summary_says_so_with_the_numbers() -> None:
    conversation = long_conversation()
    with pytest.raises(ContextOverflowError) as refused:
        fit_conversation(
            conversation,
            "long " * 80,
            EngineWindowBackend([]),
            "summarize",
            OPTIONS,
            Cancellation(),
        )
    assert refused.value.message == (
        "the message is 82 tokens with the system prompt, and only 90 fit the 100-token context "
        "window with 10 left for the answer: no room for a summary of the earlier conversation "
        "(try --on-overflow truncate, a larger --ctx or a shorter message)"
    )
    assert len(conversation.messages) == 12  # nothing was dropped


def test_summarize_of_a_message_over_the_budget_names_the_message() -> None:
    conversation = long_conversation()
    with pytest.raises(ContextOverflowError) as refused:
        fit_conversation(
            conversation,
            "long " * 92,
            EngineWindowBackend([]),
            "summarize",
            OPTIONS,
            Cancellation(),
        )
    assert refused.value.message == (
        "the message is 94 tokens with the system prompt, more than the 90 that fit the "
        "100-token context window with 10 left for the answer (try a larger --ctx, a smaller "
        "--max-tokens or a shorter message)"
    )


def test_a_message_too_long_alone_is_refused_under_every_policy() -> None:
    for policy in ("error", "truncate", "summarize"):
        with pytest.raises(ContextOverflowError):
            fit_conversation(
                long_conversation(),
                "huge " * 200,
                WindowBackend([]),
                policy,
                OPTIONS,
                Cancellation(),
            )


ALONE_HINT = "(try a larger --ctx, --chunked for long documents, or a shorter input)"


@pytest.mark.parametrize("policy", ["error", "truncate", "summarize"])
@pytest.mark.parametrize("history", [False, True])
def test_a_message_too_long_alone_is_not_advised_an_overflow_policy(
    policy: OverflowPolicy, history: bool
) -> None:
    """No policy shrinks the new message, so none is offered for one that is too long."""
    conversation = long_conversation() if history else Conversation(system="Be kind.")
    with pytest.raises(ContextOverflowError) as refused:
        fit_conversation(
            conversation, "huge " * 200, WindowBackend([]), policy, OPTIONS, Cancellation()
        )
    if policy == "summarize" and history:
        return  # summarize's own refusal names the message (the test above)
    assert refused.value.message.endswith(ALONE_HINT)
    assert "--on-overflow" not in refused.value.message


def test_history_too_long_under_error_is_advised_an_overflow_policy() -> None:
    with pytest.raises(ContextOverflowError) as refused:
        fit_conversation(
            long_conversation(), "new " * 10, WindowBackend([]), "error", OPTIONS, Cancellation()
        )
    assert refused.value.message.endswith(
        "(try --on-overflow truncate|summarize to shrink the history, or a larger --ctx)"
    )


@settings(max_examples=200, deadline=None)
@given(
    turns=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), max_size=12),
    latest=st.integers(1, 60),
)
def test_truncation_invariants(turns: list[tuple[int, int]], latest: int) -> None:
    conversation = Conversation(system="sys")
    for question, answer in turns:
        conversation.messages += [
            Message("user", "q " * question),
            Message("assistant", "a " * answer),
        ]
    original = list(conversation.messages)
    text = "new " * latest
    backend = WindowBackend([], window=120)
    try:
        report = fit_conversation(conversation, text, backend, "truncate", OPTIONS, Cancellation())
    except ContextOverflowError:
        assert backend.count_tokens([Message("system", "sys"), Message("user", text)]) > 110
        return
    kept = conversation.messages
    assert kept == original[len(original) - len(kept) :]  # a suffix: newest kept, in order
    assert not kept or kept[0].role == "user"  # whole exchanges only
    assert report.prompt_tokens <= 110
    assert conversation.system == "sys"


def test_split_text_prefers_paragraphs_then_sentences() -> None:
    def count(text: str) -> int:
        return len(text.split())

    text = "one two three.\n\nfour five six seven. eight nine ten eleven.\n\ntwelve"
    chunks = split_text(text, count, limit=5)
    assert chunks[0] == "one two three."
    assert all(count(c) <= 5 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())
    overlapping = split_text("a b. c d. e f. g h.", count, limit=4, overlap=2)
    assert overlapping == ["a b. c d.", "c d. e f.", "e f. g h."]


def test_chunked_messages_map_reduce() -> None:
    document = "\n\n".join(f"Paragraph {n} " + "filler " * 20 for n in range(30))
    backend = WindowBackend([], window=200)
    progress: list[PartProgress] = []
    chunked = chunked_messages(
        document,
        "List the facts.",
        backend,
        SamplingOptions(max_tokens=20),
        Cancellation(),
        progress.append,
    )
    messages = chunked.messages
    assert chunked.parts == len(progress) > 1
    assert len(messages) == 1
    assert messages[0].content.endswith("---\n\nList the facts.")
    assert "Notes on consecutive parts" in messages[0].content
    assert chunked.notes is not None and "Part 1: SUMMARY" in chunked.notes
    assert progress and str(progress[0]) == "summarising part 1"
    # The first round's notes are too long for the window: they are reduced again.
    assert str(progress[-1]).endswith("(round 2)")
    asked = [m.content for call in backend.seen for m in call]
    assert any("Paragraph 0" in a for a in asked) and any("Paragraph 29" in a for a in asked)


def test_a_refused_long_input_writes_its_counts_with_thousands_separators() -> None:
    from gptcli.conversation.context import read_within

    backend = WindowBackend([], window=5000)
    with pytest.raises(ContextOverflowError) as refused:
        read_within(["word " * 2000] * 3, backend, 4000, Cancellation())
    assert refused.value.message.startswith("the input is at least 6,000 tokens but only 4,000 ")
    assert "the 5,000-token context window with 1,000 left" in refused.value.message
    with pytest.raises(ContextOverflowError, match=r"^the input is 6,000 tokens but only 4,990 "):
        fit_conversation(Conversation(), "word " * 6000, backend, "error", OPTIONS, Cancellation())

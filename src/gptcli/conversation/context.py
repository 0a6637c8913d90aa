"""Keeping a conversation inside the context window, visibly.

Three policies when history plus the new message do not fit, with room left
for the answer: ``error`` refuses (nothing is generated), ``truncate`` drops
the oldest exchanges, ``summarize`` replaces them with a summary the model
writes. The system prompt and the new message are always kept. Long documents
are summarised map-reduce style: split on paragraphs, then sentences, with
overlap; each part summarised with the user's goal in mind; the summaries
combined (recursively while they are still too long) and the instruction
applied to the whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation
from gptcli.engine.base import Backend, Cancellation, Finished, Message, TextDelta
from gptcli.errors import ContextOverflowError, UsageError

OverflowPolicy = Literal["error", "truncate", "summarize"]
POLICIES: tuple[OverflowPolicy, ...] = ("error", "truncate", "summarize")
SUMMARY_TOKENS = 300
Progress = Callable[[str], None]


def check_policy(value: str) -> OverflowPolicy:
    for policy in POLICIES:
        if value == policy:
            return policy
    raise UsageError(f"--on-overflow must be one of {', '.join(POLICIES)}, not {value!r}")


def answer_reserve(options: SamplingOptions, context_size: int) -> int:
    """Tokens kept free for the answer: --max-tokens, else an eighth of the window (≤ 512)."""
    return options.max_tokens or max(16, min(512, context_size // 8))


@dataclass(frozen=True)
class FitReport:
    """What a policy did to make the next message fit."""

    prompt_tokens: int
    dropped: int = 0
    summarized: int = 0

    def notice(self) -> str | None:
        if self.summarized:
            return f"context full: the {self.summarized} oldest messages were replaced by a summary"
        if self.dropped:
            return f"context full: the {self.dropped} oldest messages were dropped"
        return None


def complete(
    backend: Backend, messages: Sequence[Message], options: SamplingOptions, cancel: Cancellation
) -> str:
    """A whole answer, not streamed (for summaries)."""
    parts: list[str] = []
    for event in backend.stream(messages, options, cancel):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Finished) and event.reason == "interrupted":
            raise KeyboardInterrupt
    return "".join(parts).strip()


def fit_conversation(
    conversation: Conversation,
    next_text: str,
    backend: Backend,
    policy: OverflowPolicy,
    options: SamplingOptions,
    cancel: Cancellation,
) -> FitReport:
    """Make history plus ``next_text`` fit the window with room for the answer, per ``policy``."""
    size = backend.details.context_size
    budget = size - answer_reserve(options, size)
    latest = Message("user", next_text)
    needed = backend.count_tokens([*conversation.as_messages(), latest])
    if needed <= budget:
        return FitReport(needed)
    if policy == "error" or not conversation.messages:
        raise ContextOverflowError(
            f"the input is {needed} tokens but only {budget} fit the {size}-token context window "
            f"with {size - budget} left for the answer (try a larger --ctx, --on-overflow "
            "truncate|summarize, or --chunked for long documents)",
            needed=needed,
            available=budget,
        )
    if policy == "truncate":
        dropped = conversation.drop_to_fit(next_text, backend.count_tokens, budget)
        return FitReport(backend.count_tokens([*conversation.as_messages(), latest]), dropped)
    return _summarize_oldest(conversation, latest, backend, budget, options, cancel)


def _summarize_oldest(
    conversation: Conversation,
    latest: Message,
    backend: Backend,
    budget: int,
    options: SamplingOptions,
    cancel: Cancellation,
) -> FitReport:
    # Take the oldest whole exchanges until what remains, plus a summary, fits.
    messages = conversation.messages
    cut = 0
    while cut < len(messages):
        cut += 1
        while cut < len(messages) and messages[cut].role != "user":
            cut += 1
        rest = Conversation(conversation.system, messages[cut:], conversation.summary)
        if backend.count_tokens([*rest.as_messages(), latest]) + SUMMARY_TOKENS <= budget:
            break
    old = messages[:cut]
    transcript = "\n\n".join(f"{m.role.upper()}: {m.content}" for m in old)
    if conversation.summary:
        transcript = f"EARLIER SUMMARY: {conversation.summary}\n\n{transcript}"
    summary = summarize_text(
        transcript,
        "Summarise this conversation so far: who said what, every fact, name and number.",
        backend,
        replace(options, max_tokens=SUMMARY_TOKENS, temperature=0.2, stop=()),
        cancel,
    )
    conversation.messages = messages[cut:]
    conversation.summary = summary
    dropped = conversation.drop_to_fit(latest.content, backend.count_tokens, budget)
    prompt = backend.count_tokens([*conversation.as_messages(), latest])
    return FitReport(prompt, dropped=dropped, summarized=cut)


# -- long documents -------------------------------------------------------

_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def split_text(text: str, count: Callable[[str], int], limit: int, overlap: int = 0) -> list[str]:
    """Split on paragraphs, then sentences, then words, into pieces of at most ``limit`` tokens.

    Each piece after the first starts with the end of the previous one (about
    ``overlap`` tokens of whole sentences) so facts on a boundary are seen whole.
    """
    units: list[tuple[str, int, bool]] = []  # (text, tokens, starts a paragraph)
    for paragraph in _PARAGRAPHS.split(text):
        if not paragraph.strip():
            continue
        size = count(paragraph)
        if size <= limit:
            units.append((paragraph, size, True))
            continue
        first = True
        for sentence in _SENTENCES.split(paragraph):
            size = count(sentence)
            if size <= limit:
                units.append((sentence, size, first))
                first = False
                continue
            words = sentence.split(" ")
            step = max(1, len(words) * limit // (size + 1))
            for start in range(0, len(words), step):
                piece = " ".join(words[start : start + step])
                units.append((piece, count(piece), first))
                first = False
    chunks: list[str] = []
    current: list[tuple[str, int, bool]] = []
    used = 0
    for unit in units:
        if current and used + unit[1] > limit:
            chunks.append(_join(current))
            tail: list[tuple[str, int, bool]] = []
            carried = 0
            for previous in reversed(current):
                if carried + previous[1] > overlap:
                    break
                tail.insert(0, previous)
                carried += previous[1]
            current, used = tail, carried
        current.append(unit)
        used += unit[1]
    if current:
        chunks.append(_join(current))
    return chunks


def _join(units: list[tuple[str, int, bool]]) -> str:
    parts = []
    for index, (text, _, new_paragraph) in enumerate(units):
        if index:
            parts.append("\n\n" if new_paragraph else " ")
        parts.append(text)
    return "".join(parts)


def _count_text(backend: Backend) -> Callable[[str], int]:
    empty = backend.count_tokens([Message("user", "")])
    return lambda text: max(1, backend.count_tokens([Message("user", text)]) - empty)


def summarize_text(
    text: str,
    goal: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    progress: Progress | None = None,
) -> str:
    """Carry out ``goal`` on a text of any length (map-reduce when it does not fit)."""
    size = backend.details.context_size
    count = _count_text(backend)
    limit = max(64, size - (options.max_tokens or SUMMARY_TOKENS) - count(goal) - 120)
    notes = _reduce(text, goal, backend, options, cancel, progress, limit)
    return complete(backend, [Message("user", f"{notes}\n\n---\n\n{goal}")], options, cancel)


@dataclass(frozen=True)
class ChunkedPrompt:
    """The final prompt for a long document, and how it was reduced."""

    messages: list[Message]
    input_tokens: int
    parts: int = 0
    notes: str | None = None


def chunked_messages(
    document: str,
    instruction: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    progress: Progress | None = None,
) -> ChunkedPrompt:
    """The final prompt for a long document: its notes (map-reduced if needed), then the task."""
    size = backend.details.context_size
    count = _count_text(backend)
    limit = size - answer_reserve(options, size) - count(instruction) - 120
    tokens = count(document)
    if tokens <= limit:
        return ChunkedPrompt([Message("user", f"{document}\n\n---\n\n{instruction}")], tokens)
    parts: list[int] = []

    def counted(line: str) -> None:
        parts.append(1)
        if progress:
            progress(line)

    notes = _reduce(document, instruction, backend, options, cancel, counted, limit)
    prompt = f"Notes on consecutive parts of a long text:\n\n{notes}\n\n---\n\n{instruction}"
    return ChunkedPrompt([Message("user", prompt)], tokens, len(parts), notes)


def _notes_on(
    chunk: str,
    goal: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    count: Callable[[str], int],
) -> list[str]:
    """Notes on one part; a part whose prompt turns out too long is halved, not refused."""
    prompt = (
        f"{chunk}\n\n---\n\nWrite down, as short notes, the names, numbers and facts "
        f"from this text that matter for this task: {goal}"
    )
    messages = [Message("user", prompt)]
    room = backend.details.context_size - (options.max_tokens or SUMMARY_TOKENS)
    if backend.count_tokens(messages) > room:
        size = count(chunk)
        halves = split_text(chunk, count, max(16, size // 2 + 1))
        if len(halves) < 2:
            raise ContextOverflowError(
                "the context window is too small to take notes on this text (try a larger --ctx)",
                needed=size,
                available=room,
            )
        return [
            n for half in halves for n in _notes_on(half, goal, backend, options, cancel, count)
        ]
    return [complete(backend, messages, options, cancel)]


def _reduce(
    text: str,
    goal: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    progress: Progress | None,
    limit: int,
) -> str:
    """Replace ``text`` by notes on its parts, round after round, until it fits ``limit``."""
    count = _count_text(backend)
    window = backend.details.context_size
    # Each part plus its notes must fit the window; notes must be much shorter than the
    # part, or the rounds never end; a mild repeat penalty keeps small models from looping.
    notes_tokens = max(16, min(SUMMARY_TOKENS, window // 8))
    chunk_limit = max(64, window - notes_tokens - count(goal) - 120)
    options = replace(
        options,
        max_tokens=notes_tokens,
        stop=(),
        grammar=None,
        repeat_penalty=max(options.repeat_penalty, 1.15),
    )
    depth = 0
    size = count(text)
    while size > limit:
        chunks = split_text(text, count, chunk_limit, overlap=min(128, limit // 10))
        notes = []
        for number, chunk in enumerate(chunks, 1):
            if progress:
                level = f" (round {depth + 1})" if depth else ""
                progress(f"summarising part {number} of {len(chunks)}{level}")
            body = " ".join(_notes_on(chunk, goal, backend, options, cancel, count))
            notes.append(f"Part {number}: {body}")
        text = "\n\n".join(notes)
        depth += 1
        smaller = count(text)
        if smaller >= size:
            raise ContextOverflowError(
                "the context window is too small to summarise this text (try a larger --ctx)",
                needed=smaller,
                available=limit,
            )
        size = smaller
    return text

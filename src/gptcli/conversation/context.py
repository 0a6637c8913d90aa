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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Literal

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation
from gptcli.conversation.splitting import StreamSplit, split_text
from gptcli.engine.base import Backend, Cancellation, Finished, Message, TextDelta
from gptcli.errors import ContextOverflowError, UsageError

if TYPE_CHECKING:
    from gptcli.conversation.notes import NotePrompt

OverflowPolicy = Literal["error", "truncate", "summarize"]
POLICIES: tuple[OverflowPolicy, ...] = ("error", "truncate", "summarize")
SUMMARY_TOKENS = 300
COUNT_PIECE = 64 * 1024  # characters tokenized at a time: bounded memory, Ctrl-C between


@dataclass(frozen=True)
class PartProgress:
    """One part of a long document about to be summarised."""

    number: int
    of: int | None  # parts in this round; None while the document is still being read
    round: int = 1
    done: int = 0  # characters of the document in the parts before this one (first round)

    def __str__(self) -> str:
        total = f" of {self.of}" if self.of is not None else ""
        level = f" (round {self.round})" if self.round > 1 else ""
        return f"summarising part {self.number}{total}{level}"


Progress = Callable[[PartProgress], None]


def check_policy(value: str) -> OverflowPolicy:
    for policy in POLICIES:
        if value == policy:
            return policy
    raise UsageError(f"--on-overflow must be one of {', '.join(POLICIES)}, not {value!r}")


def summary_reserve(budget: int) -> int:
    """Tokens a summary of dropped history may take: SUMMARY_TOKENS, less in a small
    window, where what is kept and the new message need the rest of ``budget``."""
    return max(16, min(SUMMARY_TOKENS, budget // 4))


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
        raise _too_long(conversation, latest, needed, budget, size, backend)
    if policy == "truncate":
        dropped = conversation.drop_to_fit(next_text, backend.count_tokens, budget)
        return FitReport(backend.count_tokens([*conversation.as_messages(), latest]), dropped)
    return _summarize_oldest(conversation, latest, backend, budget, options, cancel)


def _too_long(
    conversation: Conversation,
    latest: Message,
    needed: int,
    budget: int,
    size: int,
    backend: Backend,
) -> ContextOverflowError:
    """The input does not fit: the advice names only what can make it fit. The overflow
    policies shrink the history, never the new message, so for a message too long on its
    own they are not offered."""
    alone = needed
    if conversation.messages:
        alone = backend.count_tokens([*Conversation(conversation.system).as_messages(), latest])
    if alone > budget:
        hint = "a larger --ctx, --chunked for long documents, or a shorter input"
    else:
        hint = "--on-overflow truncate|summarize to shrink the history, or a larger --ctx"
    return ContextOverflowError(
        f"the input is {needed:,} tokens but only {budget:,} fit the {size:,}-token context "
        f"window with {size - budget:,} left for the answer (try {hint})",
        needed=needed,
        available=budget,
    )


def input_limit(
    conversation: Conversation, policy: OverflowPolicy, options: SamplingOptions, size: int
) -> int:
    """The most tokens a new message can have and still be answered under ``policy``.

    Policies make room by shrinking history, never the new message: alone, it must
    leave room for the answer (``fit_conversation`` with nothing left to drop, then
    the engine's own check that at least --max-tokens, or one token, remain).
    """
    if policy == "error" or not conversation.messages:
        return size - answer_reserve(options, size)
    return size - (options.max_tokens or 1)


def read_within(blocks: Iterable[str], backend: Backend, limit: int, cancel: Cancellation) -> str:
    """A document read block by block, whole if it may fit ``limit`` tokens, else refused
    as soon as it cannot, without reading or tokenizing the rest.

    With a tokenizer that bounds the bytes one token stands for, a text of more than
    ``limit`` times that many bytes cannot fit: the refusal is certain before any
    counting. Otherwise the blocks are counted as they come (one token of slack per
    block boundary, where a cut may split what would be one token).
    """
    per_token: int | None = None
    count = _count_text(backend)
    parts: list[str] = []
    size = 0
    for block in blocks:
        if cancel.cancelled:
            raise KeyboardInterrupt
        if not parts:  # asked once there is input: the answer scans the whole vocabulary
            per_token = backend.token_bytes()
        parts.append(block)
        if per_token is not None:
            size += len(block.encode("utf-8", errors="surrogatepass"))
            over = size > limit * per_token
        else:
            size += count_long(block, count, cancel)
            over = size - len(parts) > limit
        if over:
            seen = count_long("".join(parts), count, cancel)
            window = backend.details.context_size
            raise ContextOverflowError(
                f"the input is at least {max(seen, limit + 1):,} tokens but only {limit:,} fit "
                f"the {window:,}-token context window with {window - limit:,} left for the answer "
                "(try a larger --ctx, or --chunked for long documents)",
                needed=max(seen, limit + 1),
                available=limit,
            )
    return "".join(parts)


def count_long(text: str, count: Callable[[str], int], cancel: Cancellation) -> int:
    """Tokens in ``text``, counted a bounded piece at a time (cut at whitespace)."""
    if len(text) <= COUNT_PIECE:
        return count(text)
    total = 0
    start = 0
    while start < len(text):
        if cancel.cancelled:
            raise KeyboardInterrupt
        end = min(len(text), start + COUNT_PIECE)
        if end < len(text):
            space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = space if space > start else end
        total += count(text[start:end])
        start = end
    return total


def _no_room_for_summary(bare: int, budget: int, size: int) -> ContextOverflowError:
    """Why summarize cannot answer, with the numbers, and what would."""
    room = f"the {size}-token context window with {size - budget} left for the answer"
    if bare > budget:  # the message itself is too long: no policy makes room for it
        problem = f"more than the {budget} that fit {room}"
        hint = "a larger --ctx, a smaller --max-tokens or a shorter message"
    else:
        problem = f"and only {budget} fit {room}: no room for a summary of the earlier "
        problem += "conversation"
        hint = "--on-overflow truncate, a larger --ctx or a shorter message"
    return ContextOverflowError(
        f"the message is {bare} tokens with the system prompt, {problem} (try {hint})",
        needed=bare + 16,
        available=budget,
    )


def _summarize_oldest(
    conversation: Conversation,
    latest: Message,
    backend: Backend,
    budget: int,
    options: SamplingOptions,
    cancel: Cancellation,
) -> FitReport:
    # The summary is written into the window, and then kept in it with what follows:
    # it may take only what the system prompt and the new message leave.
    size = backend.details.context_size
    bare = backend.count_tokens([*Conversation(conversation.system).as_messages(), latest])
    reserve = min(summary_reserve(budget), budget - bare)
    if reserve < 16:
        raise _no_room_for_summary(bare, budget, size)
    # Take the oldest whole exchanges until what remains, plus a summary, fits.
    messages = conversation.messages
    cut = 0
    while cut < len(messages):
        cut += 1
        while cut < len(messages) and messages[cut].role != "user":
            cut += 1
        rest = Conversation(conversation.system, messages[cut:], conversation.summary)
        if backend.count_tokens([*rest.as_messages(), latest]) + reserve <= budget:
            break
    old = messages[:cut]
    transcript = "\n\n".join(f"{m.role.upper()}: {m.content}" for m in old)
    if conversation.summary:
        transcript = f"EARLIER SUMMARY: {conversation.summary}\n\n{transcript}"
    try:
        summary = summarize_text(
            transcript,
            "Summarise this conversation so far: who said what, every fact, name and number.",
            backend,
            replace(options, max_tokens=reserve, temperature=0.2, stop=()),
            cancel,
        )
    except ContextOverflowError as exc:
        reason = re.sub(r" \(try [^)]*\)$", "", exc.message)
        raise ContextOverflowError(
            f"the {cut} oldest messages could not be summarised in the {size}-token context "
            f"window: {reason} (try a larger --ctx, or --on-overflow truncate)",
            needed=exc.needed,
            available=exc.available,
        ) from None
    conversation.messages = messages[cut:]
    conversation.summary = summary
    dropped = conversation.drop_to_fit(latest.content, backend.count_tokens, budget)
    prompt = backend.count_tokens([*conversation.as_messages(), latest])
    return FitReport(prompt, dropped=dropped, summarized=cut)


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
    notes = text
    if count_long(text, count, cancel) > limit:
        notes = _reduce([text], goal, backend, options, cancel, progress, limit)[0]
    return complete(backend, [Message("user", f"{notes}\n\n---\n\n{goal}")], options, cancel)


@dataclass(frozen=True)
class ChunkedPrompt:
    """The final prompt for a long document, and how it was reduced."""

    messages: list[Message]
    input_tokens: int
    parts: int = 0
    notes: str | None = None


def chunked_messages(
    document: str | Iterable[str],
    instruction: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    progress: Progress | None = None,
) -> ChunkedPrompt:
    """The final prompt for a long document: its notes (map-reduced if needed), then the task.

    The document may be a stream of text blocks: it is read only as far as the parts
    being summarised, so memory depends on the part size and the notes, not the document.
    """
    size = backend.details.context_size
    count = _count_text(backend)
    limit = size - answer_reserve(options, size) - count(instruction) - 120
    blocks = iter([document] if isinstance(document, str) else document)
    head: list[str] = []
    seen = 0
    for block in blocks:  # read until it is clear whether it fits one prompt
        head.append(block)
        seen += count_long(block, count, cancel)
        if seen - len(head) > limit:
            break
    else:
        whole = "".join(head)
        tokens = count_long(whole, count, cancel)
        if tokens <= limit:
            return ChunkedPrompt([Message("user", f"{whole}\n\n---\n\n{instruction}")], tokens)
        head = [whole]
    parts: list[int] = []

    def counted(step: PartProgress) -> None:
        parts.append(1)
        if progress:
            progress(step)

    stream = chain(head, blocks)
    notes, tokens = _reduce(stream, instruction, backend, options, cancel, counted, limit)
    prompt = f"Notes on consecutive parts of a long text:\n\n{notes}\n\n---\n\n{instruction}"
    return ChunkedPrompt([Message("user", prompt)], tokens, len(parts), notes)


@dataclass(frozen=True)
class _NoteTask:
    """What every part's notes are taken with."""

    goal: str
    backend: Backend
    options: SamplingOptions
    count: Callable[[str], int]


def _note_prompts(task: _NoteTask, chunk: str) -> list[tuple[Message, ...]]:
    """The prompts for notes on one part; a part whose prompt turns out too long for the
    window with its notes is halved, not refused."""
    prompt = (
        f"{chunk}\n\n---\n\nWrite down, as short notes, the names, numbers and facts "
        f"from this text that matter for this task: {task.goal}"
    )
    messages = (Message("user", prompt),)
    room = task.backend.details.context_size - (task.options.max_tokens or SUMMARY_TOKENS)
    if task.backend.count_tokens(messages) <= room:
        return [messages]
    size = task.count(chunk)
    halves = split_text(chunk, task.count, max(16, size // 2 + 1))
    if len(halves) < 2:
        raise ContextOverflowError(
            "the context window is too small to take notes on this text (try a larger --ctx)",
            needed=size,
            available=room,
        )
    return [p for half in halves for p in _note_prompts(task, half)]


def _note_options(
    options: SamplingOptions, window: int, goal_tokens: int
) -> tuple[SamplingOptions, int]:
    """How notes on a part are taken, and how large a part may be.

    Each part plus its notes must fit the window; notes must be much shorter than the
    part, or the rounds never end; a mild repeat penalty keeps small models from looping.
    """
    notes_tokens = max(16, min(SUMMARY_TOKENS, window // 8))
    chunk_limit = max(64, window - notes_tokens - goal_tokens - 120)
    noting = replace(
        options,
        max_tokens=notes_tokens,
        stop=(),
        grammar=None,
        repeat_penalty=max(options.repeat_penalty, 1.15),
    )
    return noting, chunk_limit


def _reduce(
    blocks: Iterable[str],
    goal: str,
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    progress: Progress | None,
    limit: int,
) -> tuple[str, int]:
    """Replace a text by notes on its parts, round after round, until it fits ``limit``;
    returns the notes and the text's tokens. The first round reads the text as a stream;
    the parts of a round are summarised in parallel (conversation/notes.py)."""
    from gptcli.conversation.notes import NotePrompt, take_notes  # loads the llama.cpp engine

    count = _count_text(backend)
    options, chunk_limit = _note_options(options, backend.details.context_size, count(goal))
    task = _NoteTask(goal, backend, options, count)
    overlap = min(128, limit // 10)
    splitter = StreamSplit(count, chunk_limit, overlap)
    chunks: Iterable[str] = splitter.parts(blocks, cancel)
    depth, known, size = 1, None, 0

    def prompts() -> Iterator[NotePrompt]:
        for number, chunk in enumerate(chunks, 1):
            # Shown when a slot takes the part (parts are read ahead to size the engine).
            step = PartProgress(number, known, depth, splitter.done)
            shown = partial(progress, step) if progress else None
            for messages in _note_prompts(task, chunk):
                yield NotePrompt(number, messages, shown)
                shown = None

    while True:
        bodies: dict[int, list[str]] = {}
        for number, body in take_notes(prompts(), backend, options, cancel):
            bodies.setdefault(number, []).append(body)
        text = "\n\n".join(f"Part {n}: {' '.join(body)}" for n, body in bodies.items())
        size = size or splitter.tokens
        smaller = count_long(text, count, cancel)
        if smaller >= size:
            raise ContextOverflowError(
                "the context window is too small to summarise this text (try a larger --ctx)",
                needed=smaller,
                available=limit,
            )
        if smaller <= limit:
            return text, splitter.tokens
        size = smaller
        depth += 1
        split = split_text(text, count, chunk_limit, overlap=overlap)
        chunks, known = split, len(split)

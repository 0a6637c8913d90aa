"""Slots: the sequences of one llama.cpp context, the cells each holds, the answer in each.

A slot's cells are the tokens its sequence has evaluated, one per position, and
they stay when an answer ends: the next request in the slot keeps the longest
prefix it has in common with them and evaluates only the rest (a chat's next
turn; a batch's next prompt behind the same system prompt). A request that can
take ``SHARED_PREFIX_MIN`` more tokens from another slot gets that slot's cells
copied into its own instead, and one whose source is still evaluating that
prefix waits for it.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gptcli.config import SamplingOptions
from gptcli.engine.base import AnswerClock, Finished, FinishReason, Usage
from gptcli.engine.sampler import Sampler
from gptcli.engine.speculate import Drafter
from gptcli.engine.textstream import AnswerText
from gptcli.tokens import common_prefix

# A stream copy moves a whole KV stream (the bundled model: 22.5 KiB a cell, 23 MiB for
# 1,024 cells, a few ms here), while a prompt token costs ~3.6 ms to evaluate here:
# sharing pays from a handful of tokens; 16 keeps clear of trivial template overlaps.
SHARED_PREFIX_MIN = 16
CONTEXT_STEP = 256  # llama.cpp rounds context sizes up to this


def round_up_cells(cells: int) -> int:
    return -(-cells // CONTEXT_STEP) * CONTEXT_STEP


def token_piece(lib: Any, vocab: Any, token: int, special: bool) -> bytes:
    """The bytes of ``token``'s text (with ``special``, control tokens' text too)."""
    buf = ctypes.create_string_buffer(64)
    size = lib.llama_token_to_piece(vocab, token, buf, 64, 0, special)
    if size < 0:
        buf = ctypes.create_string_buffer(-size)
        size = lib.llama_token_to_piece(vocab, token, buf, -size, 0, special)
    return buf.raw[:size]


def longest_piece(lib: Any, vocab: Any) -> int:
    """The most bytes one token's text has, for byte-level BPE and SentencePiece
    vocabularies (0 for others, which promise no limit)."""
    kind = lib.llama_vocab_type(vocab)
    if kind not in (lib.LLAMA_VOCAB_TYPE_BPE, lib.LLAMA_VOCAB_TYPE_SPM):
        return 0
    buf = ctypes.create_string_buffer(256)
    longest = 1
    for token in range(lib.llama_vocab_n_tokens(vocab)):
        size = lib.llama_token_to_piece(vocab, token, buf, 256, 0, True)
        longest = max(longest, -size if size < 0 else size)
    return longest


@dataclass(frozen=True)
class Layout:
    """A scheduler's slots: ``slots`` sequences of ``cells`` each; a lone one may ``grow``
    from ``initial`` cells to ``cells``."""

    slots: int
    cells: int
    grow: bool = False
    initial: int = 0


@dataclass(eq=False)
class Request:
    """One answer in a slot: its prompt still to evaluate, then its tokens one by one."""

    prompt: list[int]
    options: SamplingOptions
    sampler: Sampler
    seed: int
    special: bool  # pieces read with special tokens (harmony's channels, tool markup)
    order: int = 0  # when it was submitted: a request waits only for an earlier one
    clock: AnswerClock = field(default_factory=AnswerClock)
    answer: AnswerText = field(init=False)
    limit: int = field(init=False)
    fed: int = 0  # prompt tokens in the cells (or in the batch being decoded)
    reused: int = 0  # prompt tokens kept or copied instead of evaluated
    waiting: bool = False  # for an earlier request to evaluate the prefix it will copy
    slot: int = -1
    pending: int = -1  # a sampled token to evaluate in the next batch
    drafts: list[int] = field(default_factory=list)  # guessed to follow it, in that batch
    drafter: Drafter | None = None
    shown: list[int] = field(default_factory=list)  # the tokens sampled last, text to work out
    output: int = -2  # the pending token's logits' index in the batch being decoded; -2: none
    produced: int = 0
    eog: bool = False  # end-of-generation was sampled after the tokens in ``shown``
    reason: FinishReason | None = None

    def __post_init__(self) -> None:
        self.answer = AnswerText(self.options.stop)
        limit = self.options.max_tokens
        self.limit = limit if limit is not None else sys.maxsize

    def media_next(self) -> bool:
        """Whether an image or sound (stand-ins, engine/projector.py) is next to evaluate."""
        return not self.waiting and self.fed < len(self.prompt) and self.prompt[self.fed] < 0

    def sample(self, ctx: Any, is_eog: Any, vocab: Any) -> tuple[int, int]:
        """Sample the token after the pending one, then after each draft the sampler
        agreed with: how many drafts were kept, and the token to evaluate next (-1: none).

        A position is sampled only once the one before it was kept, so the sampler chain
        sees (accepts) exactly the tokens of the answer and draws as without drafts.
        """
        drafts, index, sampler = self.drafts, self.output, self.sampler
        self.output, self.shown = -2, []
        accepted = 0
        for position in range(len(drafts) + 1):
            token = sampler.sample(ctx, index + position)  # the first waits for the decode
            eog = is_eog(vocab, token)
            if eog and not self.options.ignore_eos:
                self.eog = True
                break
            self.produced += 1
            self.shown.append(token if not eog else -1)
            if self.drafter is not None:
                self.drafter.push(token)
            if position < len(drafts) and token == drafts[position]:
                accepted += 1
                if self.produced < self.limit:
                    continue
            elif self.produced < self.limit:
                return accepted, token
            break
        return accepted, -1


def finished(request: Request, reason: FinishReason, usage: Usage) -> Finished:
    """The Finished event of ``request``, with its speculation's counts."""
    drafter = request.drafter
    drafts = (drafter.drafted, drafter.accepted) if drafter is not None else (0, 0)
    return request.clock.finished(reason, usage, request.reused, request.seed, drafts)


@dataclass(eq=False)
class Slot:
    """A sequence of the context: ``cells[i]`` is the token whose K and V sit at position i."""

    seq: int
    cells: list[int] = field(default_factory=list)
    request: Request | None = None

    def end(self, reason: FinishReason) -> None:
        """End the request in this slot (its sampler freed); the slot is free again."""
        request = self.request
        assert request is not None
        request.reason = reason
        request.pending = -1
        request.sampler.free()
        self.request = None


@dataclass(frozen=True)
class PrefixPlan:
    """Where a new request's cells come from: its own slot (``source`` -1) or a copy."""

    source: int
    length: int
    waiting: bool = False


def whole_media(prompt: Sequence[int], length: int) -> int:
    """``length`` moved back to the start of the image it would cut (stand-ins of one
    image are consecutive negative numbers, engine/projector.py): an image is decoded
    whole, some projectors attend over all of it at once."""
    while (
        0 < length < len(prompt) and prompt[length] < 0 and prompt[length - 1] == prompt[length] + 1
    ):
        length -= 1
    return length


def plan_prefix(slot: Slot, slots: Sequence[Slot]) -> PrefixPlan:
    """The longest prefix ``slot``'s new request can reuse, from its own cells or another's.

    Its own cells cost nothing to keep; another slot's are copied only when that
    gives ``SHARED_PREFIX_MIN`` more tokens. A request still evaluating the prefix
    (placed in the batch being built, ``fed`` short of it) is a source to wait for.
    """
    request = slot.request
    assert request is not None
    prompt = request.prompt
    limit = len(prompt) - 1  # the last prompt token is evaluated for its logits
    kept = common_prefix(slot.cells, prompt, limit)
    best, source, ready = kept + SHARED_PREFIX_MIN - 1, -1, True
    for other in slots:  # the answers in progress first, then the idle slots' cells
        active = other.request
        if other is slot or active is None or active.waiting:
            continue
        if active.fed == 0 and active.order > request.order:
            continue
        common = common_prefix(active.prompt, prompt, limit)
        if common > best:
            best, source, ready = common, other.seq, active.fed >= common
    for other in slots:
        if other.request is None:  # no answer there now: its cells stay as they were
            common = common_prefix(other.cells, prompt, limit)
            if common > best:
                best, source, ready = common, other.seq, True
    if source < 0:
        return PrefixPlan(-1, whole_media(prompt, kept))
    return PrefixPlan(source, whole_media(prompt, best), waiting=not ready)

"""What one decode step evaluates: the answers' next tokens (with their drafts), then prompt chunks.

The scheduler (engine/scheduler.py) decodes what is filled here, once a step.
Answers go first so that each answer advances every step; prompt chunks of the
slots that have a new request fill the rest of the batch. A lone generated
token of slot 0 (one answer, nothing else to evaluate) goes in a one-token
batch of its own, which llama.cpp sets up faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gptcli.engine.slots import Request, Slot

# Each (slot, request, first cell it fills) of a step.
Filled = list[tuple[Slot, Request, int]]


@dataclass(frozen=True)
class Step:
    """A step's entries, whether prompt tokens are in, and the llama_batch to decode."""

    filled: Filled
    prompts: bool
    batch: Any


class StepBatch:
    """The llama_batch of a scheduler's steps, ``tokens`` at most, filled from its slots."""

    def __init__(self, lib: Any, tokens: int) -> None:
        self._lib = lib
        self._batch = lib.llama_batch_init(tokens, 0, 1)
        self._one = (lib.llama_token * 1)()  # a lone generated token goes in this batch
        self._one_batch = lib.llama_batch_get_one(self._one, 1)

    def fill(self, slots: Sequence[Slot], n_batch: int, size: int, draft_cost: float) -> Step:
        """Put the answers' next tokens (and drafts, within ``size`` cells a slot), then
        prompt chunks, into a batch of ``n_batch`` tokens at most."""
        filled = self._answers(slots, n_batch, size, draft_cost)
        lone = len(filled) == 1 and not filled[0][1].drafts
        if lone and filled[0][0].seq == 0 and not _prompts_left(slots):
            slot, request, _ = filled[0]
            self._one[0] = request.pending
            slot.cells.append(request.pending)
            request.pending, request.output = -1, -1
            return Step(filled, False, self._one_batch)
        batch, count = self._batch, 0
        for slot, request, _ in filled:
            count = self._add(slot, request.pending, count, False)
            request.pending, request.output = -1, count - 1
            for token in request.drafts:
                count = self._add(slot, token, count, True)
        answers = count
        count = self._add_prompts(slots, filled, count, n_batch)
        for _, request, _ in filled:
            if request.output >= 0:
                batch.logits[request.output] = True
        batch.n_tokens = count
        prompts = count > answers
        lone = len(filled) == 1 and not prompts and filled[0][0].seq == 0
        lone = lone and not filled[0][1].drafts
        return Step(filled, prompts, self._one_batch if lone else batch)

    def _answers(self, slots: Sequence[Slot], n_batch: int, size: int, draft_cost: float) -> Filled:
        """The requests with a token to evaluate, each with its drafts chosen."""
        filled = [(s, s.request, len(s.cells)) for s in slots if s.request is not None]
        filled = [entry for entry in filled if entry[1].pending >= 0]
        room = n_batch - len(filled)
        for slot, request, _ in filled:
            if request.drafter is not None:
                # As many as the answer, its cells and the batch have room for (and as pays).
                left = request.limit - request.produced - 1
                limit = min(left, size - len(slot.cells) - 1, room)
                request.drafts = request.drafter.draft(limit, draft_cost)
                room -= len(request.drafts)
        return filled

    def _add_prompts(self, slots: Sequence[Slot], filled: Filled, count: int, n_batch: int) -> int:
        """Prompt chunks after the answers' tokens, while the batch has room."""
        for slot in slots:
            request = slot.request
            if request is None or request.waiting or request.fed >= len(request.prompt):
                continue
            if count >= n_batch:
                break
            filled.append((slot, request, len(slot.cells)))
            end = min(len(request.prompt), request.fed + n_batch - count)
            for position in range(request.fed, end):
                if request.prompt[position] < 0:  # an image: _feed_media's, in the next step
                    end = position
                    break
                count = self._add(slot, request.prompt[position], count, False)
            if end == len(request.prompt):
                request.output = count - 1
            request.fed = end
        return count

    def _add(self, slot: Slot, token: int, count: int, logits: bool) -> int:
        batch = self._batch
        batch.token[count] = token
        batch.pos[count] = len(slot.cells)
        batch.n_seq_id[count] = 1
        batch.seq_id[count][0] = slot.seq
        batch.logits[count] = logits
        slot.cells.append(token)
        return count + 1

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None


def _prompts_left(slots: Sequence[Slot]) -> bool:
    for slot in slots:
        request = slot.request
        if request is not None and not request.waiting and request.fed < len(request.prompt):
            return True
    return False

"""The decode scheduler: every answer of a llama.cpp context, each in a slot, one decode a step.

The way llama-server serves everything from slots: a chat is a slot whose cells
stay between turns, `ask` is one slot, `batch` and notes on a long document are
many. Each step samples every answer that has logits, builds one batch (the
next token of each answer, then prompt chunks of the slots that have a new
request: engine/stepbatch.py) and calls ``llama_decode`` once. This is the only module that calls
it: a draft model's own context (engine/draft.py, asked for drafts here) is decoded through
``decode_run`` below.

Decoding is pipelined where it pays: llama.cpp on a GPU computes asynchronously
until the logits are read, so with one slot the host turns token t into text,
checks the stop strings and hands out the text while decode(t) runs. A stop
string is then only known after the launch, so that token's decode was for
nothing and its cell leaves the cache again. With many slots the text is worked
out before the launch instead, so a slot that finishes takes its next request
in that same batch: pipelined, every finished slot would sit out one step, and
on a CPU (where llama_decode returns only when done) nothing is won back. Not
measured on a GPU, where pipelining many slots may pay.

A one-slot scheduler's context starts small and doubles as it fills, carrying
its cache over (``llama_state_seq_get/set_data``): decoding in a 4,096-cell
cache was 2-4% slower than in a 1,024-cell one here at equal use. Many slots
share a context of ``cells`` per sequence made up front.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gptcli.config import SamplingOptions
from gptcli.engine.base import Cancellation, Event, FinishReason, TextDelta, Usage, new_seed
from gptcli.engine.cpuload import ThreadWatch
from gptcli.engine.grammar import ToolGrammar
from gptcli.engine.projector import Projector
from gptcli.engine.sampler import build_sampler
from gptcli.engine.slots import (
    Layout,
    Request,
    Slot,
    finished,
    plan_prefix,
    round_up_cells,
    token_piece,
)
from gptcli.engine.speculate import CPU_COST, DraftSource, check_mode, new_drafter
from gptcli.engine.stepbatch import StepBatch
from gptcli.errors import GptcliError

BATCH_TOKENS = 512  # tokens per llama_decode call: answers' next tokens plus prompt chunks


def decode_run(lib: Any, ctx: Any, batch: Any, seq: int, first: int, run: Sequence[int]) -> int:
    """Decode ``run`` into sequence ``seq`` of ``ctx`` at positions from ``first``, logits at
    its last token (a draft model's prompt, engine/draft.py): llama_decode's status."""
    for i, token in enumerate(run):
        batch.token[i] = token
        batch.pos[i] = first + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = False
    batch.logits[len(run) - 1] = True
    batch.n_tokens = len(run)
    return int(lib.llama_decode(ctx, batch))


class Scheduler:
    """Answers requests in the slots of one llama.cpp context, continuously batched."""

    def __init__(
        self, lib: Any, vocab: Any, layout: Layout, new_context: Callable[[int], Any]
    ) -> None:
        self._lib = lib
        self._vocab = vocab
        self._layout = layout
        self._new_context = new_context
        self._ctx: Any = None
        self._size = 0
        self.thread_watch: ThreadWatch | None = None  # the thread count, decided again
        self._use_context(new_context(layout.initial if layout.grow else layout.cells))
        self._slots = [Slot(seq) for seq in range(layout.slots)]
        self._step = StepBatch(lib, BATCH_TOKENS)
        self._llama_decode = lib.llama_decode  # one lookup per step, not two
        self._pieces: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        self._pipelined = layout.slots == 1
        self._submitted = 0
        self._generated = 0
        self._cancel = Cancellation()
        self._aborting = False
        self.draft_cost = CPU_COST  # what a drafted token adds to a step (speculate.py)
        self.media: Projector | None = None  # the embeddings of prompts' images and sounds
        self.drafts: DraftSource | None = None  # a draft model's context beside this (draft.py)

        @lib.ggml_abort_callback  # type: ignore[untyped-decorator]
        def on_abort(user_data: ctypes.c_void_p) -> bool:
            return self._cancel.cancelled

        self._on_abort = on_abort

    # -- the context -------------------------------------------------------

    def _use_context(self, ctx: Any) -> None:
        if self._ctx:
            self._lib.llama_free(self._ctx)
        self._ctx = ctx
        self._size = int(self._lib.llama_n_ctx(ctx)) if self._layout.grow else self._layout.cells
        self._n_batch = min(self._size, BATCH_TOKENS)
        self._memory = self._lib.llama_get_memory(ctx)
        self._aborting = False
        if self.thread_watch is not None:  # a grown context: the count decided last
            self._set_threads(self.thread_watch.threads)

    def _set_threads(self, count: int) -> None:
        self._lib.llama_set_n_threads(self._ctx, count, count)

    @property
    def size(self) -> int:
        """The cells a slot may hold now (a growing one: before it grows again)."""
        return self._size

    @property
    def slot_count(self) -> int:
        return len(self._slots)

    @property
    def tokens_generated(self) -> int:
        """Answer tokens produced so far, over all slots (for progress)."""
        return self._generated

    def cells(self, slot: int = 0) -> list[int]:
        """The tokens whose KV ``slot`` holds, in position order."""
        return self._slots[slot].cells

    def _reserve(self, cells: int) -> None:
        """Grow a lone slot's context to hold ``cells`` tokens (up to its window)."""
        window = self._layout.cells
        if not self._layout.grow or cells <= self._size or self._size >= window:
            return
        size = min(window, max(round_up_cells(cells), 2 * self._size))
        ctx = self._new_context(size)
        slot = self._slots[0]
        if slot.cells and not self._set_state(ctx, 0, *self._state(0)):
            slot.cells = []  # the next prompt is processed again in full
        self._use_context(ctx)

    def _room(self, slot: Slot) -> bool:
        """Whether ``slot`` has a cell for one more token (growing the context if it may)."""
        if len(slot.cells) >= self._size:
            self._reserve(len(slot.cells) + 1)
        return len(slot.cells) < self._size

    def forget(self, slot: int, position: int) -> None:
        """Drop ``slot``'s cells from ``position`` on (all of them where that is refused)."""
        self._forget(self._slots[slot], position)

    def _forget(self, slot: Slot, position: int) -> None:
        if not self._lib.llama_memory_seq_rm(self._memory, slot.seq, position, -1):
            self._lib.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            position = 0
        del slot.cells[position:]

    # -- requests ----------------------------------------------------------

    def request(
        self,
        prompt: list[int],
        options: SamplingOptions,
        special: bool = False,
        grammar: ToolGrammar | None = None,
    ) -> Request:
        """A request for ``prompt``, with its sampler chain (seeded, constrained by ``grammar``
        or the options' grammar). Raises GptcliError for a grammar llama.cpp refuses, or
        ``--speculate draft`` without a draft model."""
        check_mode(options.speculate, self.drafts)
        seed = options.seed if options.seed is not None else new_seed()
        sampler = build_sampler(self._lib, self._vocab, options, seed, grammar)
        self._submitted += 1
        return Request(prompt, options, sampler, seed, special, order=self._submitted)

    def submit(self, slot: int, request: Request) -> None:
        """Give ``request`` to ``slot``, which must be free; it starts in the next step."""
        assert self._slots[slot].request is None
        request.slot = slot
        self._slots[slot].request = request
        mode = request.options.speculate
        request.drafter = new_drafter(mode, request.prompt, self.draft_cost, self.drafts, slot)

    @property
    def cancelled(self) -> bool:
        """Whether the answers being decoded were interrupted (asked by the draft model)."""
        return self._cancel.cancelled

    def answer(self, request: Request, cancel: Cancellation) -> Iterator[Event]:
        """``request`` in slot 0, the only one: its text, then Finished."""
        self.submit(0, request)
        for _, text in self.run(cancel):
            if text:
                yield TextDelta(text)
        usage = Usage(len(request.prompt), request.produced)
        reason = request.reason or "length"
        yield finished(request, reason, usage)

    def run(self, cancel: Cancellation) -> Iterator[tuple[Request, str | None]]:
        """Decode until no slot has a request: (request, text) as text comes, (request, None)
        when it has ended (``reason`` set). A slot freed there may be given a new request
        before the next item is asked for.

        After ``cancel`` every request ends "interrupted"; Ctrl-C stops llama.cpp inside
        a batch that carries prompt tokens (one of generated tokens takes milliseconds).
        """
        self._cancel = cancel
        watch = self.thread_watch
        try:
            while True:
                if cancel.cancelled:
                    yield from self._end_all("interrupted")
                    return
                shown = self._sample()
                for request in shown:
                    if request.reason is not None:
                        yield request, None
                if not self._pipelined:
                    yield from self._show(shown)
                if not self._settle():
                    return
                if watch is not None and (count := watch.poll()) is not None:
                    self._set_threads(count)
                if not self._launch(cancel):
                    yield from self._end_all("interrupted")
                    return
                if self._pipelined:
                    yield from self._show(shown)
        finally:
            self._abort_on(False)
            self._release_requests()

    def _release_requests(self) -> None:
        """Free the samplers of the requests still in slots (an interrupted or failed run)."""
        for slot in self._slots:
            if slot.request is not None:
                slot.request.sampler.free()
                slot.request = None

    # -- one step ----------------------------------------------------------

    def _sample(self) -> list[Request]:
        """Sample every request that has logits: the requests with tokens to show.

        A token that ends the turn ends its request ("stop"), here if it has nothing
        left to show; the others are queued for the next batch while the answer has
        room and tokens left.
        """
        shown: list[Request] = []
        for slot in self._slots:
            request = slot.request
            if request is None or request.output == -2:
                continue
            self._sample_request(slot, request)
            if request.eog and not request.shown:
                slot.end("stop")
            shown.append(request)
        return shown

    def _sample_request(self, slot: Slot, request: Request) -> None:
        """The request's next token, and after it each draft the sampler agrees with."""
        drafts = request.drafts
        accepted, following = request.sample(self._ctx, self._lib.llama_vocab_is_eog, self._vocab)
        self._generated += len(request.shown)
        if drafts:
            self._forget(slot, len(slot.cells) - len(drafts) + accepted)
            assert request.drafter is not None
            request.drafter.verified(len(drafts), accepted)
            request.drafts = []
        if following >= 0 and self._room(slot):
            request.pending = following

    def _show(self, shown: list[Request]) -> Iterator[tuple[Request, str | None]]:
        """The text of each token sampled; the requests a stop string or a limit ended."""
        for request in shown:
            if request.reason is not None:
                continue
            pieces = self._pieces[request.special]
            tokens = request.shown
            for number, token in enumerate(tokens):
                piece = b"" if token < 0 else pieces.get(token)
                if piece is None:
                    piece = token_piece(self._lib, self._vocab, token, request.special)
                    pieces[token] = piece
                text, stopped = request.answer.feed(piece)
                if text:
                    request.clock.text_shown()
                    yield request, text
                if stopped:
                    self._cut(request, len(tokens) - 1 - number)
                    yield from self._finish(self._slots[request.slot], "stop")
                    break
            else:
                if request.eog:
                    yield from self._finish(self._slots[request.slot], "stop")
                elif request.pending < 0 and request.output == -2:
                    # the token limit, or the cells are full
                    yield from self._finish(self._slots[request.slot], "length")

    def _cut(self, request: Request, dropped: int) -> None:
        """End the answer at a stop string, ``dropped`` tokens before its last: the cells
        from the token that completed it on leave the cache, the tokens after it the count."""
        slot = self._slots[request.slot]
        if request.output != -2:  # a batch with its cells is being decoded
            self._lib.llama_synchronize(self._ctx)
        request.produced -= dropped
        self._generated -= dropped
        self._forget(slot, len(request.prompt) + request.produced - 1)
        request.pending = -1

    def _settle(self) -> bool:
        """Settle where each new request's cells come from; False when no slot has a request."""
        busy = False
        for slot in self._slots:
            request = slot.request
            if request is None:
                continue
            busy = True
            if request.fed or request.output != -2 or request.pending >= 0:
                continue
            self._lib.llama_synchronize(self._ctx)  # the cells may still be being written
            plan = plan_prefix(slot, self._slots)
            request.waiting = plan.waiting
            if plan.waiting:
                continue
            if plan.source < 0:
                self._forget(slot, plan.length)
            else:
                self._lib.llama_memory_seq_cp(self._memory, plan.source, slot.seq, -1, -1)
                self._lib.llama_memory_seq_rm(self._memory, slot.seq, plan.length, -1)
                slot.cells = self._slots[plan.source].cells[: plan.length]
            request.fed = request.reused = plan.length
            self._reserve(len(request.prompt))
        return busy

    def _launch(self, cancel: Cancellation) -> bool:
        """One llama_decode of the queued tokens and prompt chunks; False when interrupted."""
        if self.media is not None and not self._feed_media(cancel):
            return False
        step = self._step.fill(self._slots, self._n_batch, self._size, self.draft_cost)
        filled, prompts = step.filled, step.prompts
        if not filled:
            return True
        self._abort_on(prompts)
        status = self._llama_decode(self._ctx, step.batch)
        if status == 0 and not (prompts and cancel.cancelled):
            if prompts:
                now = time.perf_counter()
                for _, request, _ in filled:
                    if request.fed == len(request.prompt) and request.clock.prefilled is None:
                        request.clock.prefilled = now
            return True
        return self._undo(filled, prompts, status, cancel)

    def _undo(
        self,
        filled: list[tuple[Slot, Request, int]],
        prompts: bool,
        status: int,
        cancel: Cancellation,
    ) -> bool:
        """Take a failed or interrupted step's batch out of the cache; False when interrupted,
        True when the answers only ran out of cells, an error for anything else."""
        for slot, request, start in filled:  # nothing of this batch stays in the cache
            self._forget(slot, start)
            request.output, request.drafts = -2, []
        if status == 2 or cancel.cancelled:
            return False
        if status == 1 and not prompts:
            return True  # no cell left for the answers' next tokens: they end there
        for slot in self._slots:
            self._forget(slot, 0)
        doing = "to process the prompt" if prompts else "while generating"
        raise GptcliError(f"llama.cpp failed {doing} (code {status})")

    def _feed_media(self, cancel: Cancellation) -> bool:
        """Decode the images and sounds next in the slots' prompts from their embeddings (a
        batch of tokens cannot carry them), a run per llama_decode; False when interrupted."""
        assert self.media is not None
        for slot in self._slots:
            while (request := slot.request) is not None and request.media_next():
                start, fed = len(slot.cells), request.fed
                batch, whole = self.media.fill(request.prompt, fed, self._n_batch, slot.seq, start)
                self._abort_on(True)
                self._lib.llama_set_causal_attn(self._ctx, not whole)
                status = self._llama_decode(self._ctx, batch)
                self._lib.llama_set_causal_attn(self._ctx, True)
                if status != 0 or cancel.cancelled:
                    self._forget(slot, start)
                    if status == 2 or cancel.cancelled:
                        return False
                    raise GptcliError(f"llama.cpp failed to process an image or sound ({status})")
                request.fed += batch.n_tokens
                slot.cells.extend(request.prompt[fed : request.fed])
        return True

    def _abort_on(self, wanted: bool) -> None:
        """Let Ctrl-C stop llama.cpp inside a decode. Only while prompt chunks are decoded:
        llama.cpp asks after every graph node, a call into Python each time."""
        if wanted != self._aborting and self._ctx:
            callback = self._on_abort if wanted else self._lib.ggml_abort_callback()
            self._lib.llama_set_abort_callback(self._ctx, callback, None)
            self._aborting = wanted

    # -- ending ------------------------------------------------------------

    def _finish(self, slot: Slot, reason: FinishReason) -> Iterator[tuple[Request, str | None]]:
        request = slot.request
        assert request is not None
        slot.end(reason)
        if reason != "stop":  # text held back for a stop string that never came
            tail = request.answer.flush()
            if tail:
                yield request, tail
        yield request, None

    def _end_all(self, reason: FinishReason) -> Iterator[tuple[Request, str | None]]:
        for slot in self._slots:
            if slot.request is not None:
                yield from self._finish(slot, reason)

    # -- sequence state: session snapshots, the prompt cache, a growing context ----

    def state_size(self, slot: int = 0) -> int:
        return int(self._lib.llama_state_seq_get_size(self._ctx, self._slots[slot].seq))

    def export_state(self, slot: int = 0) -> tuple[list[int], bytes]:
        """``slot``'s tokens and llama.cpp's serialised KV cache for them."""
        state, written = self._state(self._slots[slot].seq)
        return list(self._slots[slot].cells), ctypes.string_at(state, written)

    def import_state(self, tokens: list[int], state: bytes, slot: int = 0) -> bool:
        """Restore a KV cache made by ``export_state`` into ``slot`` (free); on any failure
        the slot starts clean."""
        n_vocab = self._lib.llama_vocab_n_tokens(self._vocab)
        lowest = 0 if self.media is None else -(2**31)  # stand-ins for media are negative
        if len(tokens) > self._layout.cells or any(not lowest <= t < n_vocab for t in tokens):
            return False
        target = self._slots[slot]
        self._lib.llama_synchronize(self._ctx)  # a decode in flight may still write
        self._forget(target, 0)
        self._reserve(len(tokens) + 1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not self._set_state(self._ctx, target.seq, buf, len(state)):
            return False
        target.cells = list(tokens)
        return True

    def _state(self, seq: int) -> tuple[Any, int]:
        lib = self._lib
        lib.llama_synchronize(self._ctx)  # a pipelined decode may still write its cell
        size = lib.llama_state_seq_get_size(self._ctx, seq)
        state = (ctypes.c_uint8 * size)()
        return state, lib.llama_state_seq_get_data(self._ctx, state, size, seq)

    def _set_state(self, ctx: Any, seq: int, state: Any, length: int) -> bool:
        """Load a serialised KV cache into ``ctx``'s sequence ``seq``; on failure leave it empty."""
        lib = self._lib
        if lib.llama_state_seq_set_data(ctx, state, length, seq) != 0:
            return True
        lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), seq, -1, -1)
        return False

    def close(self) -> None:
        lib = self._lib
        if self.drafts is not None:
            self.drafts.close()
            self.drafts = None
        self._step.close()
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None

"""Many answers at once: parallel sequences of one llama.cpp context, continuously batched.

Every ``llama_decode`` call carries the next token of each sequence that is
answering, and fills the rest of the batch with prompt tokens of sequences that
have just taken a free slot. When an answer ends, its cells are removed and the
next job takes the slot in the following batch, so the batch stays full until
the jobs run out. Each sequence has its own sampler chain (seed, grammar), its
own stop strings, end-of-generation and token limit, exactly as a single answer
has in engine/llama.py.

Prompts that begin alike (the template, a system prompt, a role's instructions)
share the work. When an answer ends, its prompt's cells stay in its slot, and
the next job there keeps the common prefix and evaluates only the rest. A job
that can take ``SHARED_PREFIX_MIN`` more tokens from another stream (the first
jobs, when no slot has been used yet) gets that stream copied into its own
(``llama_memory_seq_cp`` across streams, applied at the start of the next
``llama_decode``) and drops the cells past the common prefix; a job that starts
in the same batch as the sequence it would copy from waits one batch for it.

Any other backend (a server) is driven by :class:`StreamPool`: up to N answers
streamed by threads at once, the server batching them on its side.
"""

from __future__ import annotations

import ctypes
import queue
import secrets
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from gptcli.config import SamplingOptions
from gptcli.engine.base import (
    AnswerClock,
    Backend,
    Cancellation,
    Finished,
    FinishReason,
    Message,
    TextDelta,
    Usage,
)
from gptcli.engine.llama import LlamaBackend
from gptcli.engine.sampler import Sampler
from gptcli.engine.textstream import AnswerText
from gptcli.engine.thinking import Splitter
from gptcli.errors import ContextOverflowError, GptcliError, UsageError

BATCH_TOKENS = 512  # tokens per llama_decode call: answers' next tokens plus prompt chunks
CPU_PARALLEL_PER_CORE = 4
CPU_PARALLEL_MAX = 16
GPU_PARALLEL_MAX = 32
KV_SHARE_OF_MEMORY = 4  # the KV caches of all sequences may take 1/4 of the available memory
# A stream copy moves a whole KV stream (the bundled model: 22.5 KiB a cell, 23 MiB for
# 1,024 cells, a few ms here), while a prompt token costs ~3.6 ms to evaluate here:
# sharing pays from a handful of tokens; 16 keeps clear of trivial template overlaps.
SHARED_PREFIX_MIN = 16
REMOTE_PARALLEL = 8  # requests in flight by default: a server batches them on its side


@dataclass(frozen=True)
class BatchJob:
    """One prompt to answer; ``index`` is its place in the input."""

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


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_parallel(backend: LlamaBackend, cells_each: int) -> int:
    """How many sequences to decode together when --parallel is not given.

    On a CPU, aggregate decode keeps rising up to about 4 sequences per core
    (llama-batched-bench, 2 cores: 97 t/s for 1 sequence, 173 for 4, 202 for 8,
    231 for 16) while each answer slows down, so 4 per physical core, at most 16;
    on a GPU 32. Fewer when the KV caches of that many full windows would take
    more than a quarter of the available memory.
    """
    on_gpu = backend.on_gpu
    wanted = (
        GPU_PARALLEL_MAX
        if on_gpu
        else min(CPU_PARALLEL_MAX, CPU_PARALLEL_PER_CORE * max(1, backend.threads))
    )
    memory = available_memory()
    if memory is not None and not on_gpu:
        per_sequence = backend.kv_bytes_per_cell() * cells_each
        wanted = min(wanted, max(1, memory // KV_SHARE_OF_MEMORY // max(1, per_sequence)))
    return max(1, min(int(wanted), int(backend.lib.llama_max_parallel_sequences())))


def parallel_for(backend: Backend, cells_each: int, requested: int | None = None) -> int:
    """How many answers to work on at once: ``requested``, else the default for
    ``backend`` (:func:`default_parallel` in process, REMOTE_PARALLEL for a server)."""
    if not isinstance(backend, LlamaBackend):
        return requested or REMOTE_PARALLEL
    wanted = requested or default_parallel(backend, cells_each)
    limit = int(backend.lib.llama_max_parallel_sequences())
    if wanted > limit:
        raise UsageError(f"--parallel is at most {limit} with this llama.cpp build")
    return wanted


def open_engine(backend: Backend, parallel: int, cells_each: int) -> LlamaBatch | StreamPool:
    """Continuous batching in a context of its own for llama.cpp, threads for a server.

    Each sequence gets ``cells_each`` cells of its own (the context is split, not
    shared), so a job fits exactly when it would fit a window of that size alone.
    """
    if isinstance(backend, LlamaBackend):
        return LlamaBatch(backend, parallel, cells_each)
    return StreamPool(backend, parallel)


@dataclass
class _Sequence:
    """A job in a slot: its prompt still to evaluate, then its answer token by token."""

    job: BatchJob
    slot: int
    order: int  # when it took its slot: a sequence waits only for one that started before it
    prompt: list[int]
    sampler: Sampler
    seed: int
    answer: AnswerText
    splitter: Splitter  # takes a reasoning model's thinking out of the answer
    special: bool  # pieces read with special tokens (harmony's channel markup)
    clock: AnswerClock = field(default_factory=AnswerClock)
    fed: int = 0  # prompt tokens evaluated (or placed in the batch being decoded)
    shared: int = 0  # prompt tokens copied from another sequence instead of evaluated
    waiting: bool = False  # for an earlier sequence to evaluate the prefix it will copy
    next_token: int | None = None  # sampled, to evaluate in the next batch
    produced: int = 0
    text: list[str] = field(default_factory=list)


class LlamaBatch:
    """Continuous batching over ``parallel`` sequences of one llama.cpp context."""

    def __init__(self, backend: LlamaBackend, parallel: int, cells_each: int) -> None:
        self._backend = backend
        self._lib = backend.lib
        self._vocab = backend.vocab
        self._parallel = parallel
        self._cells = cells_each
        self._n_batch = BATCH_TOKENS
        self._ctx = backend.parallel_context(parallel, cells_each, self._n_batch)
        self._memory = self._lib.llama_get_memory(self._ctx)
        self._batch = self._lib.llama_batch_init(self._n_batch, 0, 1)
        self._tokens_decoded = 0
        self._started = 0
        self._retired: dict[int, list[int]] = {}  # slot -> the prompt whose cells it still holds
        self._cancel = Cancellation()

        @self._lib.ggml_abort_callback  # type: ignore[untyped-decorator]
        def on_abort(user_data: ctypes.c_void_p) -> bool:
            return self._cancel.cancelled

        self._on_abort = on_abort

    @property
    def tokens_generated(self) -> int:
        """Answer tokens produced so far, over all sequences (for progress)."""
        return self._tokens_decoded

    def run(self, jobs: Iterator[BatchJob], cancel: Cancellation) -> Generator[BatchOutcome]:
        """Answer ``jobs`` (pulled only when a slot is free); outcomes in finishing order.

        After ``cancel``, the answers in progress are dropped, not reported.
        """
        self._cancel = cancel
        self._lib.llama_set_abort_callback(self._ctx, self._on_abort, None)
        slots: list[_Sequence | None] = [None] * self._parallel
        more = True
        try:
            while not cancel.cancelled:
                for slot, held in enumerate(slots):
                    while more and held is None:
                        job = next(jobs, None)
                        if job is None:
                            more = False
                            break
                        started = self._start(job, slot)
                        if isinstance(started, BatchOutcome):
                            yield started
                        else:
                            slots[slot] = held = started
                active = [s for s in slots if s is not None]
                if not active:
                    return
                self._share_prefixes(active, slots)
                yield from self._step(active, slots, cancel)
        finally:
            for held in slots:
                if held is not None:
                    held.sampler.free()

    def _start(self, job: BatchJob, slot: int) -> _Sequence | BatchOutcome:
        options = job.options
        try:
            tokens, splitter, special = self._backend.prompt_for(job.messages, options.think)
            wanted = options.max_tokens or 1
            if len(tokens) + wanted > self._cells:
                raise ContextOverflowError(
                    f"the prompt is {len(tokens)} tokens and {wanted} more are needed for the "
                    f"answer, but each sequence holds {self._cells} (try a larger --ctx)",
                    needed=len(tokens) + wanted,
                    available=self._cells,
                )
            seed = options.seed if options.seed is not None else secrets.randbelow(2**32 - 1)
            sampler = self._backend.sampler(options, seed)
        except GptcliError as exc:
            return BatchOutcome(job.index, error=exc)
        answer = AnswerText(options.stop)
        self._started += 1
        return _Sequence(job, slot, self._started, tokens, sampler, seed, answer, splitter, special)

    def _share_prefixes(self, active: list[_Sequence], slots: list[_Sequence | None]) -> None:
        """Give each sequence that has evaluated nothing yet the longest prefix it can reuse.

        In its own slot, the cells of the prompt answered there before stay where they
        are (removing the rest costs nothing). From another stream, a prefix is copied
        when it is ``SHARED_PREFIX_MIN`` tokens longer than that.
        """
        for seq in active:
            if seq.fed:
                continue
            seq.waiting = False
            limit = len(seq.prompt) - 1  # the last prompt token is evaluated for its logits
            before = self._retired.get(seq.slot)
            kept = _common_prefix(before, seq.prompt, limit) if before is not None else 0
            best, source = kept + SHARED_PREFIX_MIN - 1, -1
            ready = True
            for other in active:
                if other is seq or other.waiting or (other.fed == 0 and other.order > seq.order):
                    continue
                common = _common_prefix(other.prompt, seq.prompt, limit)
                if common > best:
                    best, source, ready = common, other.slot, other.fed >= common
            for slot, prompt in self._retired.items():
                if slots[slot] is None:  # no answer there now: its cells stay as they were
                    common = _common_prefix(prompt, seq.prompt, limit)
                    if common > best:
                        best, source, ready = common, slot, True
            if source < 0:
                self._lib.llama_memory_seq_rm(self._memory, seq.slot, kept, -1)
                shared = kept
            elif not ready:  # that sequence evaluates the prefix in this batch: copy in the next
                seq.waiting = True
                continue
            else:
                self._lib.llama_memory_seq_cp(self._memory, source, seq.slot, -1, -1)
                self._lib.llama_memory_seq_rm(self._memory, seq.slot, best, -1)
                shared = best
            self._retired.pop(seq.slot, None)
            seq.fed = seq.shared = shared

    def _step(
        self, active: list[_Sequence], slots: list[_Sequence | None], cancel: Cancellation
    ) -> Iterator[BatchOutcome]:
        """One llama_decode: answering sequences' next tokens, then prompt chunks."""
        batch = self._batch
        outputs: list[tuple[int, _Sequence]] = []
        count = 0

        def add(token: int, position: int, seq: _Sequence, logits: bool) -> None:
            nonlocal count
            batch.token[count] = token
            batch.pos[count] = position
            batch.n_seq_id[count] = 1
            batch.seq_id[count][0] = seq.slot
            batch.logits[count] = logits
            if logits:
                outputs.append((count, seq))
            count += 1

        for seq in active:
            if seq.next_token is not None:
                add(seq.next_token, len(seq.prompt) + seq.produced - 1, seq, True)
                seq.next_token = None
        for seq in active:
            remaining = len(seq.prompt) - seq.fed
            if remaining <= 0 or seq.waiting or count >= self._n_batch:
                continue
            take = min(remaining, self._n_batch - count)
            for offset in range(take):
                position = seq.fed + offset
                add(seq.prompt[position], position, seq, position == len(seq.prompt) - 1)
            seq.fed += take
        batch.n_tokens = count
        status = self._lib.llama_decode(self._ctx, batch)
        if status == 2 or cancel.cancelled:
            return
        if status != 0:
            raise GptcliError(f"llama.cpp failed to decode a batch (code {status})")
        for index, seq in outputs:
            reason = self._advance(seq, index)
            if reason is not None:
                slots[seq.slot] = None
                yield self._finish(seq, reason)

    def _advance(self, seq: _Sequence, index: int) -> FinishReason | None:
        """Sample the sequence's next token from output ``index``; a reason when it ends."""
        lib = self._lib
        if seq.produced == 0:
            seq.clock.prefilled = time.perf_counter()
        options = seq.job.options
        token = seq.sampler.sample(self._ctx, index)
        end_of_turn = lib.llama_vocab_is_eog(self._vocab, token)
        if end_of_turn and not options.ignore_eos:
            return "stop"
        seq.produced += 1
        self._tokens_decoded += 1
        piece = b"" if end_of_turn else self._backend.piece(token, seq.special)
        text, stopped = seq.answer.feed(piece)
        if text:
            seq.clock.text_shown()
            seq.text.append(text)
        if stopped:
            return "stop"
        if options.max_tokens is not None and seq.produced >= options.max_tokens:
            return "length"
        if len(seq.prompt) + seq.produced >= self._cells:
            return "length"  # this sequence's cells are full
        seq.next_token = token
        return None

    def _finish(self, seq: _Sequence, reason: FinishReason) -> BatchOutcome:
        lib = self._lib
        if reason != "stop":
            seq.text.append(seq.answer.flush())
        seq.sampler.free()
        # The prompt's cells stay for the next job in this slot (or another) to reuse.
        lib.llama_memory_seq_rm(self._memory, seq.slot, len(seq.prompt), -1)
        self._retired[seq.slot] = seq.prompt
        usage = Usage(len(seq.prompt), seq.produced)
        finished = seq.clock.finished(reason, usage, seq.shared, seq.seed)
        # As in a single answer (and from a server), thinking is not part of the text.
        parts = [*seq.splitter.feed("".join(seq.text)), *seq.splitter.flush()]
        text = "".join(part.text for part in parts if isinstance(part, TextDelta))
        return BatchOutcome(seq.job.index, text, finished)

    def close(self) -> None:
        lib = self._lib
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None


class StreamPool:
    """Up to ``parallel`` answers streamed at once from any backend (a server batches them)."""

    def __init__(self, backend: Backend, parallel: int) -> None:
        self._backend = backend
        self._parallel = parallel
        self._tokens = 0
        self._lock = threading.Lock()

    @property
    def tokens_generated(self) -> int:
        return self._tokens

    def _answer(self, job: BatchJob, cancel: Cancellation) -> BatchOutcome:
        text: list[str] = []
        try:
            options = job.options
            if options.seed is None:
                options = replace(options, seed=secrets.randbelow(2**31 - 1))
            for event in self._backend.stream(job.messages, options, cancel):
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, Finished):  # thinking is not part of a batch answer
                    with self._lock:
                        self._tokens += event.usage.completion_tokens
                    return BatchOutcome(job.index, "".join(text), event)
        except GptcliError as exc:
            return BatchOutcome(job.index, "".join(text), error=exc)
        return BatchOutcome(job.index, "".join(text), error=GptcliError("the answer ended early"))

    def run(self, jobs: Iterator[BatchJob], cancel: Cancellation) -> Generator[BatchOutcome]:
        """Answer ``jobs``, pulled as threads free up; outcomes in finishing order."""
        done: queue.Queue[Future[BatchOutcome]] = queue.Queue()
        stop = Cancellation()  # the threads' own flag: set on ``cancel``, and on leaving
        in_flight = 0
        more = True
        with ThreadPoolExecutor(self._parallel, thread_name_prefix="gptcli-batch") as pool:
            try:
                while not cancel.cancelled:
                    while more and in_flight < self._parallel:
                        job = next(jobs, None)
                        if job is None:
                            more = False
                            break
                        future = pool.submit(self._answer, job, stop)
                        future.add_done_callback(done.put)
                        in_flight += 1
                    if in_flight == 0:
                        return
                    try:
                        finished = done.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    in_flight -= 1
                    outcome = finished.result()
                    if cancel.cancelled or _interrupted(outcome):
                        continue
                    yield outcome
            finally:
                stop.cancel()  # the threads still streaming stop at their next chunk

    def close(self) -> None:
        pass


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``."""
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _interrupted(outcome: BatchOutcome) -> bool:
    return outcome.finished is not None and outcome.finished.reason == "interrupted"

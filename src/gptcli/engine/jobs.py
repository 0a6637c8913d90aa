"""Batch jobs answered in the slots of one decode scheduler, a job taking a slot as one frees.

Each job's prompt is made and checked against its slot's cells when it takes the
slot; the scheduler keeps the batch full while jobs remain (continuous batching).
Each answer has its own sampler chain (seed, grammar), stop strings,
end-of-generation and token limit, exactly as a single answer has.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

from gptcli.config import ThinkMode
from gptcli.engine.base import (
    BatchJob,
    BatchOutcome,
    Cancellation,
    Message,
    TextDelta,
    Usage,
)
from gptcli.engine.promptcache import PromptCache, PromptWrite
from gptcli.engine.scheduler import Scheduler
from gptcli.engine.slots import Request, finished
from gptcli.engine.thinking import Splitter
from gptcli.errors import ContextOverflowError, GptcliError

CPU_PARALLEL_PER_CORE = 4
CPU_PARALLEL_MAX = 16
GPU_PARALLEL_MAX = 32
KV_SHARE_OF_MEMORY = 4  # the KV caches of all sequences may take 1/4 of the available memory

# The prompt's tokens, the splitter that takes the thinking out of its answer, and whether
# its pieces are read with special tokens (LlamaBackend.prompt_for).
PromptMaker = Callable[[Sequence[Message], ThinkMode], tuple[list[int], Splitter, bool]]


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def physical_memory() -> int | None:
    """Bytes of RAM in this machine, if the system says."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def default_parallel(on_gpu: bool, threads: int, sequence_bytes: int, limit: int) -> int:
    """How many sequences to decode together when --parallel is not given.

    On a CPU, aggregate decode keeps rising up to about 4 sequences per core
    (llama-batched-bench, 2 cores: 97 t/s for 1 sequence, 173 for 4, 202 for 8,
    231 for 16) while each answer slows down, so 4 per physical core, at most 16;
    on a GPU 32. Fewer when the KV caches of that many full windows
    (``sequence_bytes`` each) would take more than a quarter of the available memory.
    """
    wanted = GPU_PARALLEL_MAX if on_gpu else min(CPU_PARALLEL_MAX, CPU_PARALLEL_PER_CORE * threads)
    memory = available_memory()
    if memory is not None and not on_gpu:
        wanted = min(wanted, max(1, memory // KV_SHARE_OF_MEMORY // max(1, sequence_bytes)))
    return max(1, min(int(wanted), limit))


@dataclass
class _Job:
    job: BatchJob
    splitter: Splitter  # takes a reasoning model's thinking out of the answer
    text: list[str] = field(default_factory=list)


class SlotBatch:
    """Continuous batching of jobs over the slots of ``scheduler``, ``cells`` each."""

    def __init__(
        self,
        prompt_for: PromptMaker,
        scheduler: Scheduler,
        cells: int,
        cache: PromptCache | None = None,
    ) -> None:
        self._prompt_for = prompt_for
        self._scheduler = scheduler
        self._slots = scheduler.slot_count
        self._cells = cells
        self._cache = cache  # the first job's prompt prefix from earlier runs, and back
        self._running: dict[int, _Job] = {}  # id(request) -> its job
        self._free: list[int] = []
        self._jobs: Iterator[BatchJob] | None = None

    @property
    def tokens_generated(self) -> int:
        """Answer tokens produced so far, over all slots (for progress)."""
        return self._scheduler.tokens_generated

    def run(self, jobs: Iterator[BatchJob], cancel: Cancellation) -> Generator[BatchOutcome]:
        """Answer ``jobs`` (pulled only when a slot is free); outcomes in finishing order.

        After ``cancel``, the answers in progress are dropped, not reported.
        """
        self._running = {}
        self._free = list(range(self._slots - 1, -1, -1))  # slot 0 first
        self._jobs = jobs
        yield from self._fill()
        while self._running and not cancel.cancelled:
            # A slot freed while the scheduler runs takes the next job before its next step.
            for request, text in self._scheduler.run(cancel):
                entry = self._running[id(request)]
                if text:
                    entry.text.append(text)
                elif text is None:
                    del self._running[id(request)]
                    self._free.append(request.slot)
                    if not cancel.cancelled:
                        yield _outcome(entry, request)
                        yield from self._fill()

    def _fill(self) -> Iterator[BatchOutcome]:
        """Give free slots the next jobs; a job that cannot start is an outcome at once."""
        while self._jobs is not None and self._free:
            job = next(self._jobs, None)
            if job is None:
                self._jobs = None
                break
            started = self._start(job)
            if isinstance(started, BatchOutcome):
                yield started
                continue
            request, entry = started
            slot = self._free.pop()
            if self._cache is not None:
                self._cache.restore(self._scheduler, request.prompt, slot)
            self._scheduler.submit(slot, request)
            self._running[id(request)] = entry

    def _start(self, job: BatchJob) -> tuple[Request, _Job] | BatchOutcome:
        options = job.options
        try:
            tokens, splitter, special = self._prompt_for(job.messages, options.think)
            wanted = options.max_tokens or 1
            if len(tokens) + wanted > self._cells:
                raise ContextOverflowError(
                    f"the prompt is {len(tokens):,} tokens and {wanted:,} more are needed for "
                    f"the answer, but each sequence holds {self._cells:,} (try a larger --ctx)",
                    needed=len(tokens) + wanted,
                    available=self._cells,
                )
            request = self._scheduler.request(tokens, options, special)
        except GptcliError as exc:
            return BatchOutcome(job.index, error=exc)
        return request, _Job(job, splitter)

    def save_prompt_cache(self) -> PromptWrite | None:
        """Write the first job's prompt, as far as a slot still holds it, to the prompt
        cache if it is worth an entry. Raises OSError where the disk refuses."""
        if self._cache is None:
            return None
        return self._cache.save(self._scheduler)

    def close(self) -> None:
        self._scheduler.close()


def _outcome(entry: _Job, request: Request) -> BatchOutcome:
    reason = request.reason or "length"
    usage = Usage(len(request.prompt), request.produced)
    done = finished(request, reason, usage)
    # As in a single answer (and from a server), thinking is not part of the text.
    splitter = entry.splitter
    parts = [*splitter.feed("".join(entry.text)), *splitter.flush()]
    text = "".join(part.text for part in parts if isinstance(part, TextDelta))
    return BatchOutcome(entry.job.index, text, done)

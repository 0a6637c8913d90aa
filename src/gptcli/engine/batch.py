"""Many answers at once: the slots of one llama.cpp context, or threads for a server.

With llama.cpp, jobs are the requests of a decode scheduler with ``parallel``
slots (engine/scheduler.py, engine/jobs.py): every decode step
carries the next token of each answer in progress and prompt chunks of the
slots that have just taken a job, and prompts that begin alike share their
cells. Any other backend (a server) is driven by :class:`StreamPool`: up to N
answers streamed by threads at once, the server batching them on its side.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from gptcli.engine.abilities import BatchEngine, abilities
from gptcli.engine.base import (
    Backend,
    BatchJob,
    BatchOutcome,
    Cancellation,
    Finished,
    TextDelta,
    new_seed,
)
from gptcli.engine.promptcache import PromptWrite
from gptcli.errors import GptcliError, UsageError

__all__ = [
    "BatchEngine",
    "BatchJob",
    "BatchOutcome",
    "StreamPool",
    "in_process",
    "open_engine",
    "parallel_for",
]

REMOTE_PARALLEL = 8  # requests in flight by default: a server batches them on its side


def in_process(backend: Backend) -> bool:
    """Whether ``backend`` batches answers itself (llama.cpp) rather than through a server."""
    return abilities(backend).slots is not None


def parallel_for(backend: Backend, cells_each: int, requested: int | None = None) -> int:
    """How many answers to work on at once: ``requested``, else the backend's default
    for slots of ``cells_each`` cells (REMOTE_PARALLEL for a server)."""
    slots = abilities(backend).slots
    if slots is None:
        return requested or REMOTE_PARALLEL
    wanted = requested or slots.default_parallel(cells_each)
    limit = slots.parallel_limit()
    if wanted > limit:
        raise UsageError(f"--parallel is at most {limit} with this llama.cpp build")
    return wanted


def open_engine(backend: Backend, parallel: int, cells_each: int) -> BatchEngine:
    """The backend's own slots (llama.cpp: a context of its own), threads for a server.

    Each sequence gets ``cells_each`` cells of its own (the context is split, not
    shared), so a job fits exactly when it would fit a window of that size alone.
    """
    slots = abilities(backend).slots
    if slots is not None:
        return slots.open_slots(parallel, cells_each)
    return StreamPool(backend, parallel)


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
                options = replace(options, seed=new_seed())
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

    def save_prompt_cache(self) -> PromptWrite | None:
        return None  # a server keeps its own

    def close(self) -> None:
        pass


def _interrupted(outcome: BatchOutcome) -> bool:
    return outcome.finished is not None and outcome.finished.reason == "interrupted"

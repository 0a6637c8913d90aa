"""Notes on the parts of a long document, taken in parallel.

The parts' prompts go through the machinery of `gptcli batch`: with llama.cpp,
parallel sequences of one context of their own, continuously batched; with a
server, one request at a time (see ``take_notes``). The parts are pulled from their iterator only
as slots free up, so a streamed document is still read only as far as the parts
being worked on. The notes come back in the parts' order, whatever order they
finished in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import chain, islice

from gptcli.config import SamplingOptions
from gptcli.engine.base import Backend, Cancellation, Message
from gptcli.engine.batch import BatchJob, in_process, open_engine, parallel_for


@dataclass(frozen=True)
class NotePrompt:
    """The prompt for notes on (a piece of) part ``part``."""

    part: int
    messages: tuple[Message, ...]
    taken_up: Callable[[], None] | None = None  # called when a slot takes it (progress)


def take_notes(
    prompts: Iterator[NotePrompt],
    backend: Backend,
    options: SamplingOptions,
    cancel: Cancellation,
    parallel: int | None = None,
) -> list[tuple[int, str]]:
    """(part, notes) for every prompt, in the prompts' order.

    Each sequence holds the whole window, so a prompt fits exactly when it would fit
    alone; a prompt that does not is an error (the caller halves parts beforehand).
    ``parallel`` prompts at once: by default as many as `gptcli batch` would decode
    together with llama.cpp, one with a server. Raises KeyboardInterrupt after
    ``cancel``, as a single interrupted answer does.
    """
    window = backend.details.context_size
    # A server may end the answer it streams when another request arrives (llama-cpp-
    # python's own does, unless started with --interrupt_requests False), so its parts
    # go one at a time, as they always did; `gptcli batch` leaves that choice to --parallel.
    if parallel is None and not in_process(backend):
        parallel = 1
    wanted = parallel_for(backend, window, parallel)
    first = list(islice(prompts, wanted))  # no more sequences than there are prompts
    if not first:
        return []
    parts: list[int] = []

    def jobs() -> Iterator[BatchJob]:
        for index, prompt in enumerate(chain(first, prompts)):
            parts.append(prompt.part)
            if prompt.taken_up is not None:
                prompt.taken_up()
            yield BatchJob(index, prompt.messages, options)

    texts: dict[int, str] = {}
    engine = open_engine(backend, min(wanted, len(first)), window)
    try:
        with closing(engine.run(jobs(), cancel)) as outcomes:
            for outcome in outcomes:
                if outcome.error is not None:
                    raise outcome.error
                texts[outcome.index] = outcome.text.strip()
    finally:
        engine.close()
    if cancel.cancelled:
        raise KeyboardInterrupt
    return [(part, texts[index]) for index, part in enumerate(parts)]

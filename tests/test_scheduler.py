"""The decode scheduler: slots that keep their cells, share prefixes, grow, and stay seeded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptcli.config import SamplingOptions
from gptcli.engine.base import BatchJob, Cancellation, Message, TextDelta
from gptcli.engine.scheduler import BATCH_TOKENS, Scheduler
from gptcli.engine.slots import SHARED_PREFIX_MIN, Layout, Request
from tests.conftest import WORKER_THREADS

pytestmark = pytest.mark.slow
GREEDY = SamplingOptions(temperature=0, max_tokens=16)
SYSTEM = (
    "You are a helpful assistant who answers questions about geography briefly and "
    "accurately. Keep every answer to one short sentence."
)


@pytest.fixture(scope="module")
def backend(bundled_model: Path) -> Iterator[Any]:
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    loaded = LlamaBackend(
        LoadOptions(bundled_model, threads=WORKER_THREADS or 2, extra_buffers=False)
    )
    yield loaded
    loaded.close()


def slots(backend: Any, count: int, cells: int = 512) -> Scheduler:
    def context(size: int) -> Any:
        return backend.parallel_context(count, size, BATCH_TOKENS)

    return Scheduler(backend._lib, backend._vocab, Layout(count, cells), context)


def prompt(backend: Any, text: str, system: str = SYSTEM) -> list[int]:
    messages = [Message("system", system), Message("user", text)]
    return list(backend.prompt_for(messages, "auto")[0])


def run(scheduler: Scheduler, *placed: tuple[int, Request]) -> dict[int, str]:
    """Each request's text, all answered together, keyed by slot."""
    for slot, request in placed:
        scheduler.submit(slot, request)
    texts = {slot: "" for slot, _ in placed}
    for request, text in scheduler.run(Cancellation()):
        texts[request.slot] += text or ""
    return texts


def test_a_slot_copies_the_prefix_another_slot_evaluated(backend: Any) -> None:
    france, spain = prompt(backend, "Capital of France?"), prompt(backend, "Capital of Spain?")
    scheduler = slots(backend, 2)
    try:
        first = scheduler.request(france, GREEDY)
        run(scheduler, (0, first))
        assert first.reused == 0
        second = scheduler.request(spain, GREEDY)
        shared = run(scheduler, (1, second))[1]
        assert second.reused >= SHARED_PREFIX_MIN  # the template and the system prompt
        assert scheduler.cells(1)[: second.reused] == france[: second.reused]
        assert scheduler.cells(1)[: len(spain)] == spain
    finally:
        scheduler.close()
    fresh = slots(backend, 2)
    try:
        alone = run(fresh, (1, fresh.request(spain, GREEDY)))[1]
    finally:
        fresh.close()
    assert shared == alone


def test_requests_answered_together_answer_as_alone(backend: Any) -> None:
    texts = ["Capital of France?", "Capital of Spain?", "Capital of Italy?"]
    prompts = [prompt(backend, text) for text in texts]
    together = slots(backend, 3)
    try:
        answers = run(together, *((n, together.request(p, GREEDY)) for n, p in enumerate(prompts)))
    finally:
        together.close()
    for n, tokens in enumerate(prompts):
        alone = slots(backend, 1)
        try:
            assert run(alone, (0, alone.request(tokens, GREEDY)))[0] == answers[n]
        finally:
            alone.close()


def test_a_slot_keeps_its_cells_between_requests(backend: Any) -> None:
    scheduler = backend.scheduler
    scheduler.forget(0, 0)
    first = prompt(backend, "Capital of France?")
    request = scheduler.request(first, GREEDY)
    events = list(scheduler.answer(request, Cancellation()))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    kept = list(scheduler.cells(0))
    assert kept[: len(first)] == first and len(kept) > len(first)
    follow = list(kept) + backend.tokenize(" And of Spain?", special=False)
    again = scheduler.request(follow, GREEDY)
    list(scheduler.answer(again, Cancellation()))
    assert again.reused == len(kept)  # only the new tokens were evaluated
    assert answer


def test_a_lone_slot_grows_and_answers_as_a_full_size_one(backend: Any) -> None:
    document = " ".join(f"Item {n} is a {'red' if n % 3 else 'blue'} box." for n in range(60))
    tokens = prompt(backend, f"{document}\nWhich items are blue?")
    assert 512 < len(tokens) < 1024
    options = SamplingOptions(temperature=0.8, seed=5, max_tokens=40, ignore_eos=True)

    def answer(initial: int) -> tuple[str, int]:
        layout = Layout(1, 2048, grow=True, initial=initial)
        scheduler = Scheduler(backend._lib, backend._vocab, layout, backend._new_context)
        try:
            text = run(scheduler, (0, scheduler.request(tokens, options)))[0]
            return text, scheduler.size
        finally:
            scheduler.close()

    grown, size = answer(256)
    full, full_size = answer(2048)
    assert 512 < size < 2048 and full_size == 2048  # it grew, and only as far as it had to
    assert grown == full


def test_the_same_seed_gives_the_same_text_in_one_slot_and_in_a_batch(backend: Any) -> None:
    options = SamplingOptions(temperature=0.8, seed=42, max_tokens=32)
    messages = (Message("user", "Invent a name for a cat."),)
    single = "".join(
        e.text
        for e in backend.stream(list(messages), options, Cancellation())
        if isinstance(e, TextDelta)
    )
    batch = backend.open_slots(1, 1024)
    try:
        outcomes = list(batch.run(iter([BatchJob(0, messages, options)]), Cancellation()))
    finally:
        batch.close()
    assert [o.text for o in outcomes] == [single]
    assert outcomes[0].finished is not None and outcomes[0].finished.seed == 42


def test_a_thread_count_changed_while_decoding_keeps_the_text(backend: Any) -> None:
    """The count decided again mid-answer (cpuload.ThreadWatch) reaches llama.cpp, a context
    that grows keeps the count of now, and the text is the same as at a fixed count."""

    class Flipping:
        """A watch that gives 2 threads for one step in eight and 1 for the rest (more steps
        at 2 would meet the other test worker's threads: see tests/conftest.py)."""

        def __init__(self) -> None:
            self.threads = 1
            self.polls = self.changes = 0

        def poll(self) -> int | None:
            self.polls += 1
            wanted = 2 if self.polls % 8 == 0 else 1
            if wanted == self.threads:
                return None
            self.threads = wanted
            self.changes += 1
            return wanted

    def growing() -> Scheduler:  # 256 cells at first, 1,024 at most, as ask's slot
        def context(size: int) -> Any:
            return backend.parallel_context(1, size, BATCH_TOKENS)

        return Scheduler(backend._lib, backend._vocab, Layout(1, 1024, True, 256), context)

    question = prompt(backend, "Write a story about a lighthouse.")
    options = SamplingOptions(temperature=0, max_tokens=230, ignore_eos=True)
    fixed_scheduler = growing()
    fixed = run(fixed_scheduler, (0, fixed_scheduler.request(question, options)))[0]
    scheduler = growing()
    watch = Flipping()
    scheduler.thread_watch = watch  # type: ignore[assignment]
    flipped = run(scheduler, (0, scheduler.request(question, options)))[0]
    assert scheduler.size > 256  # it grew while the count kept changing
    assert watch.changes >= 50
    assert int(backend._lib.llama_n_threads(scheduler._ctx)) == watch.threads
    assert flipped == fixed and len(fixed.split()) > 100

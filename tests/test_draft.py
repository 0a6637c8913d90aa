"""Draft-model speculation: the bundled model drafting for itself keeps the text it gives
without drafts; a draft model of another vocabulary is refused in one line."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gptcli.config import SamplingOptions, SpeculateMode
from gptcli.engine.base import BatchJob, Cancellation, Finished, Message, TextDelta
from gptcli.errors import UsageError
from tests.conftest import Gptcli
from tests.tinymodel import write_tiny_llama

PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
    "wick, polished the great lens, and wrote the weather in a leather logbook."
)
COPY = "Repeat this text exactly:\n\n" + PASSAGE
GREEDY = SamplingOptions(temperature=0, max_tokens=32)


@pytest.fixture(scope="module")
def drafting(bundled_model: Path) -> Iterator[Any]:
    """The bundled model with itself as its draft model."""
    from gptcli.engine.draft import DraftOptions
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    draft = DraftOptions(bundled_model, extra_buffers=False)
    backend = LlamaBackend(LoadOptions(bundled_model, extra_buffers=False, draft=draft))
    yield backend
    backend.close()


def answer(
    backend: Any, options: SamplingOptions, cancel: Cancellation | None = None
) -> tuple[str, Finished]:
    text, done = "", None
    for event in backend.stream([Message("user", COPY)], options, cancel or Cancellation()):
        if isinstance(event, TextDelta):
            text += event.text
            if cancel is not None:
                cancel.cancel()
        elif isinstance(event, Finished):
            done = event
    assert done is not None
    return text, done


@pytest.mark.slow
def test_the_bundled_model_drafting_for_itself_keeps_the_text(gptcli: Gptcli) -> None:
    common = ("ask", "--json", "--temperature", "0", "-n", "40")
    off = gptcli(*common, "--speculate", "off", COPY)
    drafted = gptcli(*common, "--draft", "smollm2", "--speculate", "draft", COPY)
    assert off.returncode == drafted.returncode == 0, off.stderr + drafted.stderr
    plain, spec = json.loads(off.stdout), json.loads(drafted.stdout)
    assert spec["text"] == plain["text"]
    assert plain["timings"]["drafted"] == 0
    timings = spec["timings"]
    assert timings["drafted"] >= 10
    assert timings["accepted"] >= 0.9 * timings["drafted"]


@pytest.mark.slow
def test_a_draft_model_of_another_vocabulary_is_one_line_and_exit_2(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    tiny = write_tiny_llama(tmp_path / "tiny.gguf")
    result = gptcli("ask", "--draft", str(tiny), "-n", "4", "hello")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot draft for this model" in lines[0], result.stderr
    assert "49,152" in lines[0] and "Traceback" not in result.stderr
    # With speculation off the draft model is not loaded at all: no refusal, an answer.
    unused = gptcli("ask", "--speculate", "off", "--draft", str(tiny), "-n", "4", "hello")
    assert unused.returncode == 0 and unused.stdout.strip(), unused.stderr


@pytest.mark.slow
def test_speculate_draft_without_a_draft_model_is_one_line_and_exit_2(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--speculate", "draft", "-n", "4", "hello")
    assert result.returncode == 2
    expected = "gptcli: error: --speculate draft needs a draft model (--draft MODEL)"
    assert result.stderr.strip() == expected


def test_a_vocabulary_that_differs_in_one_token_is_refused(tmp_path: Path) -> None:
    from gptcli.engine.draft import DraftOptions
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    target = write_tiny_llama(tmp_path / "target.gguf")
    other = write_tiny_llama(tmp_path / "other.gguf", last_token="Ġtha")
    with pytest.raises(UsageError, match=r"token 260 is 'Ġtha' there and 'Ġthe' here"):
        LlamaBackend(LoadOptions(target, threads=1, draft=DraftOptions(other)))
    same = LlamaBackend(LoadOptions(target, threads=1, draft=DraftOptions(target)))
    same.close()


@pytest.mark.slow
def test_slots_draft_with_the_draft_model_and_give_the_same_texts(drafting: Any) -> None:
    jobs = [
        BatchJob(i, (Message("user", f"Repeat this text exactly:\n\n{text}"),), GREEDY)
        for i, text in enumerate([PASSAGE, PASSAGE[40:]])
    ]

    def texts(mode: SpeculateMode) -> dict[int, str]:
        engine = drafting.open_slots(2, 256)
        try:
            placed = [replace(job, options=replace(GREEDY, speculate=mode)) for job in jobs]
            outcomes = list(engine.run(iter(placed), Cancellation()))
        finally:
            engine.close()
        if mode == "draft":
            assert all(out.finished.timings.accepted > 0 for out in outcomes)
        return {out.index: out.text for out in outcomes}

    assert texts("draft") == texts("off")


@pytest.mark.slow
def test_an_interrupted_drafting_answer_ends_and_the_next_is_whole(drafting: Any) -> None:
    draft = replace(GREEDY, speculate="draft")
    _, done = answer(drafting, draft, Cancellation())
    assert done.reason == "interrupted"
    text, done = answer(drafting, draft)
    plain, plain_done = answer(drafting, replace(GREEDY, speculate="off"))
    assert (done.reason, text) == (plain_done.reason, plain)
    assert done.timings.accepted > 0


@pytest.mark.slow
def test_sampling_with_drafts_draws_from_the_same_distribution(drafting: Any) -> None:
    """As tests/test_speculate.py's n-gram test: where each answer first leaves the
    passage, over 40 seeds with and without drafts, compared with a chi-square test. A
    verifier that kept the draft model's (greedy) tokens without sampling would stay on
    the passage longer."""
    source = drafting.tokenize(PASSAGE, special=False)
    options = SamplingOptions(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, max_tokens=4)
    drafted_tokens = 0

    def departures(mode: SpeculateMode) -> Counter[int]:
        nonlocal drafted_tokens
        found: Counter[int] = Counter()
        for seed in range(40):
            text, done = answer(drafting, replace(options, speculate=mode, seed=seed))
            drafted_tokens += done.timings.drafted
            tokens = drafting.tokenize(text, special=False)
            found[next((i for i, t in enumerate(tokens) if source[i : i + 1] != [t]), 4)] += 1
        return found

    plain, drafted = departures("off"), departures("draft")
    assert drafted_tokens > 0
    statistic, cells = 0.0, 0
    for where in set(plain) | set(drafted):
        a, b = plain[where], drafted[where]
        statistic += (a - b) ** 2 / (a + b)
        cells += 1
    dof = max(1, cells - 1)  # chi-square's 0.001 quantile, Wilson-Hilferty
    bound = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3
    assert statistic < bound, (plain, drafted)

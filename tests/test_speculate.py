"""N-gram speculation: the text it gives is the text without it; drafts are verified exactly."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from gptcli.config import SamplingOptions, SpeculateMode
from gptcli.engine.base import BatchJob, Cancellation, Finished, Message, TextDelta
from gptcli.engine.speculate import CPU_COST, GPU_COST, NGRAM_COST, NgramDrafter, best_length
from tests.conftest import Gptcli

PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
    "wick, polished the great lens, and wrote the weather in a leather logbook. Ships passed "
    "far out at sea, and none of their crews ever knew his name."
)
COPY = [Message("user", "Repeat this text exactly:\n\n" + PASSAGE)]
GREEDY = SamplingOptions(temperature=0, max_tokens=80)


# -- the drafter, without a model ---------------------------------------------


def test_the_drafter_proposes_what_followed_the_longest_earlier_match() -> None:
    drafter = NgramDrafter([1, 2, 3, 4, 5, 9, 2, 3, 7], "ngram")
    for token in (1, 2, 3):
        drafter.push(token)
    drafter.acceptance = 0.9  # long drafts pay
    # "1 2 3" occurred once, followed by 4 5; "2 3" alone was last followed by 7.
    assert drafter.draft(2, GPU_COST) == [4, 5]


def test_the_drafter_proposes_nothing_without_a_match() -> None:
    drafter = NgramDrafter([1, 2, 3], "ngram")
    drafter.push(8)
    assert drafter.draft(4, GPU_COST) == []


def test_auto_does_not_draft_where_a_drafted_token_costs_a_step() -> None:
    assert best_length(0.9, CPU_COST, 16) == 0
    assert best_length(0.9, GPU_COST, 16) == 0  # until a GPU measurement says otherwise
    assert best_length(0.9, 0.05, 16) >= 8  # where a drafted token is cheap, long drafts pay
    assert best_length(0.1, NGRAM_COST, 16) == 0
    drafter = NgramDrafter([1, 2, 3, 4, 5, 1, 2], "ngram")
    assert drafter.draft(4, CPU_COST) == [3]  # ngram drafts at least one wherever it can


def test_drafts_it_did_not_send_still_teach_it_the_acceptance_rate() -> None:
    drafter = NgramDrafter([5, 6, 7, 8, 9], "auto")
    drafter.push(5)
    drafter.push(6)
    assert drafter.draft(3, CPU_COST) == []  # it would not pay
    before = drafter.acceptance
    drafter.push(7)
    drafter.push(8)
    assert drafter.acceptance > before
    assert drafter.drafted == 0


# -- with the bundled model ---------------------------------------------------


def answer(
    backend: Any, options: SamplingOptions, messages: list[Message] = COPY
) -> tuple[str, Finished]:
    text, done = "", None
    for event in backend.stream(messages, options, Cancellation()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            done = event
    assert done is not None
    return text, done


def same_answer(backend: Any, options: SamplingOptions) -> Finished:
    """Asserts ngram and off give the same answer; ngram's Finished."""
    plain, plain_done = answer(backend, replace(options, speculate="off"))
    drafted, done = answer(backend, replace(options, speculate="ngram"))
    assert drafted == plain
    assert (done.reason, done.usage) == (plain_done.reason, plain_done.usage)
    assert plain_done.timings.drafted == 0
    return done


@pytest.mark.slow
def test_greedy_text_is_the_same_and_drafts_are_accepted(llama_backend: Any) -> None:
    done = same_answer(llama_backend, GREEDY)
    assert done.timings.accepted >= 10
    assert done.timings.drafted >= done.timings.accepted


@pytest.mark.slow
def test_a_stop_string_inside_an_accepted_draft_ends_the_answer_there(llama_backend: Any) -> None:
    done = same_answer(llama_backend, replace(GREEDY, stop=("polished",)))
    assert done.reason == "stop"
    assert done.timings.accepted > 0


@pytest.mark.slow
@pytest.mark.parametrize("limit", [7, 20, 33])
def test_a_token_limit_inside_a_draft_ends_the_answer_there(llama_backend: Any, limit: int) -> None:
    done = same_answer(llama_backend, replace(GREEDY, max_tokens=limit))
    assert done.usage.completion_tokens == limit
    assert done.reason == "length"


@pytest.mark.slow
def test_a_grammar_and_a_repeat_penalty_see_only_the_tokens_kept(llama_backend: Any) -> None:
    # Within the copied passage: past it, the model writes freely, where the f16 KV
    # cache's rounding (different in a batch) may flip a near tie (see test_sampling_...).
    copying = replace(GREEDY, max_tokens=40)
    grammar = 'root ::= [A-Za-z ,.]+ "\\n"'
    done = same_answer(llama_backend, replace(copying, grammar=grammar))
    assert done.timings.accepted > 0
    # A penalty on repeats makes it leave the passage sooner.
    done = same_answer(llama_backend, replace(copying, repeat_penalty=1.3, max_tokens=26))
    assert done.timings.drafted > 0


@pytest.mark.slow
def test_many_slots_draft_and_give_the_same_texts(llama_backend: Any) -> None:
    jobs = [
        BatchJob(i, (Message("user", f"Repeat this text exactly:\n\n{text}"),), GREEDY)
        for i, text in enumerate([PASSAGE, PASSAGE[40:], "Ships passed far out at sea."])
    ]

    def texts(mode: SpeculateMode) -> dict[int, str]:
        engine = llama_backend.open_slots(3, 512)
        try:
            placed = [replace(job, options=replace(GREEDY, speculate=mode)) for job in jobs]
            return {out.index: out.text for out in engine.run(iter(placed), Cancellation())}
        finally:
            engine.close()

    assert texts("ngram") == texts("off")


@pytest.mark.slow
def test_sampling_draws_from_the_same_distribution(llama_backend: Any) -> None:
    """At temperature > 0 the same seed gives the same text as long as the batched logits
    equal the one-token ones. With an f16 KV cache they do not quite (a batch attends
    to its own tokens' K and V at another precision: logits differ by up to ~0.5 here,
    and not at all with an f32 cache), so a seed may take another turn. What must hold
    is the distribution: where each answer first leaves the passage, over 80 seeds with
    and without drafts, compared with a chi-square test (a sampler that kept drafts without sampling
    them would leave the passage later)."""
    source = llama_backend.tokenize(PASSAGE, special=False)
    options = SamplingOptions(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, max_tokens=8)

    def departures(mode: SpeculateMode) -> Counter[int]:
        found: Counter[int] = Counter()
        for seed in range(80):
            text, _ = answer(llama_backend, replace(options, speculate=mode, seed=seed))
            tokens = llama_backend.tokenize(text, special=False)
            found[next((i for i, t in enumerate(tokens) if source[i : i + 1] != [t]), 8)] += 1
        return found

    plain, drafted = departures("off"), departures("ngram")
    assert sum(drafted.values()) == 80
    statistic, cells = 0.0, 0
    for where in set(plain) | set(drafted):
        a, b = plain[where], drafted[where]
        statistic += (a - b) ** 2 / (a + b)
        cells += 1
    # chi-square, cells - 1 degrees of freedom; 0.001 quantile bound via Wilson-Hilferty
    dof = max(1, cells - 1)
    bound = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3
    assert statistic < bound, (plain, drafted)


@pytest.mark.slow
def test_ask_json_reports_drafted_and_accepted(gptcli: Gptcli) -> None:
    common = ("ask", "--json", "--temperature", "0", "-n", "40", "Repeat this text exactly: ")
    off = gptcli(*common[:-1], "--speculate", "off", common[-1] + PASSAGE)
    ngram = gptcli(*common[:-1], "--speculate", "ngram", common[-1] + PASSAGE)
    assert off.returncode == ngram.returncode == 0, off.stderr + ngram.stderr
    plain, drafted = json.loads(off.stdout), json.loads(ngram.stdout)
    assert drafted["text"] == plain["text"]
    assert plain["timings"]["drafted"] == 0
    assert drafted["timings"]["accepted"] > 0
    assert drafted["timings"]["drafted"] >= drafted["timings"]["accepted"]

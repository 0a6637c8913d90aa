"""The grammar checks the chain's choice instead of the whole vocabulary: same answers.

Greedy decoding must give exactly the text llama.cpp's grammar-first chain gives
(the best token the grammar allows, either way); sampling must stay within the
grammar.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gptcli.config import SamplingOptions
from gptcli.engine.base import Cancellation, Message, TextDelta
from gptcli.engine.grammar import grammar_sampler, schema_grammar

RECIPE = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}, "minItems": 3},
    },
    "required": ["title", "steps"],
}
CASES = [
    ("Give a recipe for pancakes as JSON.", schema_grammar(RECIPE)),
    ("Is Paris in France?", 'root ::= "yes" | "no"'),
    ("Name the capital city of France.", 'root ::= "The answer is " [A-Z] [a-z]+ "."'),
    ("Say hello.", 'root ::= "banana split"'),  # nothing the model would say unforced
]


@pytest.fixture
def backend(llama_backend: Any) -> Any:
    return llama_backend


def grammar_first(lib: Any, vocab: Any, options: SamplingOptions, seed: int, tools: Any) -> Any:
    """llama.cpp's plain chain with the grammar in front: every candidate tested, every token.

    The reference the sampler is held to; bench/grammar.py times against its own copy,
    so that the tests never import the benchmarks."""
    from gptcli.engine.sampler import Sampler

    assert options.grammar is not None
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    lib.llama_sampler_chain_add(chain, grammar_sampler(lib, vocab, options.grammar))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    return Sampler(lib, vocab, chain, None)


def answer(backend: Any, prompt: str, options: SamplingOptions) -> str:
    events = backend.stream([Message("user", prompt)], options, Cancellation())
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize(("prompt", "grammar"), CASES)
def test_greedy_answers_equal_the_grammar_first_chain(
    backend: Any, prompt: str, grammar: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gptcli.engine.scheduler as scheduler

    options = SamplingOptions(temperature=0, max_tokens=48, grammar=grammar)
    checked_after = answer(backend, prompt, options)
    monkeypatch.setattr(scheduler, "build_sampler", grammar_first)
    assert answer(backend, prompt, options) == checked_after
    if grammar.startswith('root ::= "banana'):
        assert checked_after == "banana split"


@pytest.mark.parametrize("seed", [7, 8])
def test_sampled_answers_stay_in_the_grammar(backend: Any, seed: int) -> None:
    from jsonschema import validate

    bounded = {  # so that a sampled answer ends within the token limit
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 30},
            "steps": {
                "type": "array",
                "items": {"type": "string", "maxLength": 30},
                "minItems": 2,
                "maxItems": 3,
            },
        },
        "required": ["title", "steps"],
    }
    grammar = schema_grammar(bounded)
    options = SamplingOptions(temperature=1.0, max_tokens=300, grammar=grammar, seed=seed)
    validate(json.loads(answer(backend, "Give a recipe as JSON.", options)), bounded)

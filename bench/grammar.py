"""A grammar-constrained answer: grammar checked after the chain, against grammar first.

    .venv/bin/python bench/grammar.py [--tokens 96] [--rounds 3]

The same greedy answer to a `--schema` request is decoded twice per round in one
process: with the grammar first in llama.cpp's sampler chain (tested against the
whole vocabulary for every token, as gptcli did before), and with
``engine/sampler.py``'s order (the chain's choice checked, the vocabulary only
after a refusal). Reports decode tokens/s (wall of the answer after the first
token) and whether the two answers are the same text, which greedy guarantees.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}, "minItems": 6},
        "minutes": {"type": "integer"},
    },
    "required": ["title", "steps", "minutes"],
}
PROMPT = "Give a recipe for pancakes as JSON, with every step spelled out."


def grammar_first(lib: Any, vocab: Any, options: Any, seed: int, tools: Any = None) -> Any:
    """llama.cpp's plain chain with the grammar in front: every candidate tested, every token."""
    from gptcli.engine.grammar import grammar_sampler
    from gptcli.engine.sampler import Sampler

    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    lib.llama_sampler_chain_add(chain, grammar_sampler(lib, vocab, options.grammar))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    return Sampler(lib, vocab, chain, None)


def answer(backend: Any, options: Any) -> tuple[str, float]:
    from gptcli.engine.base import Cancellation, Finished, Message, TextDelta

    text, rate = "", 0.0
    for event in backend.stream([Message("user", PROMPT)], options, Cancellation()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            rate = event.decode_tokens_per_second
    return text, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import gptcli.engine.llama as llama
    import gptcli.engine.scheduler as scheduler
    from gptcli.config import SamplingOptions
    from gptcli.engine.grammar import schema_grammar
    from gptcli.models.resolve import bundled_model_path

    backend = llama.LlamaBackend(llama.LoadOptions(path=bundled_model_path()))
    options = SamplingOptions(
        temperature=0, max_tokens=args.tokens, grammar=schema_grammar(SCHEMA), seed=1
    )
    from gptcli.engine.sampler import build_sampler as checked_after

    rates: dict[str, list[float]] = {"grammar_first": [], "checked_after": []}
    texts: dict[str, str] = {}
    answer(backend, options)  # warm up
    for _ in range(args.rounds):
        for name, build in (("grammar_first", grammar_first), ("checked_after", checked_after)):
            vars(scheduler)["build_sampler"] = build
            started = time.perf_counter()
            texts[name], rate = answer(backend, options)
            rates[name].append(rate)
            print(name, f"{rate:.1f} t/s", f"{time.perf_counter() - started:.2f} s", flush=True)
    vars(scheduler)["build_sampler"] = checked_after
    first = statistics.median(rates["grammar_first"])
    after = statistics.median(rates["checked_after"])
    print(f"grammar first {first:.1f} t/s, checked after {after:.1f} t/s ({after / first:.1f}x)")
    print("same text:", texts["grammar_first"] == texts["checked_after"])
    print(texts["checked_after"][:300])


if __name__ == "__main__":
    main()

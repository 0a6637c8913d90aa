"""Choosing each token: llama.cpp's sampler chain, and a grammar checked after it.

llama.cpp's grammar sampler, put first in a chain, tests every token of the
vocabulary against the grammar for every token sampled (49,152 candidates for
the bundled model; 150k-250k for Qwen, Llama 3 and Gemma), which makes a long
constrained answer crawl. :class:`Sampler` does what llama.cpp's own tools do
(``common_sampler_sample``): the chain picks a token from the raw logits, the
grammar checks that one token, and only when it is refused is the grammar
applied to all candidates and the chain run again on what is left.

The result is the distribution the grammar-first chain samples from: a token
the grammar allows is kept with its probability p; after a refusal the chain
samples from the allowed tokens renormalised, p / Z. Together p + (1 - Z) p / Z
= p / Z, the same. Greedy picks the same token either way.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

from gptcli.config import SamplingOptions
from gptcli.engine.grammar import ToolGrammar, grammar_sampler


class Sampler:
    """One answer's sampler: ``sample`` a token from the logits at an output index."""

    def __init__(self, lib: Any, vocab: Any, chain: Any, grammar: Any | None) -> None:
        self._lib = lib
        self._chain = chain
        self._grammar = grammar
        self._candidates: _Candidates | None = None
        if grammar is not None:
            self._candidates = _Candidates(lib, lib.llama_vocab_n_tokens(vocab))

    def sample(self, ctx: Any, index: int) -> int:
        lib = self._lib
        candidates = self._candidates
        if candidates is None:
            return int(lib.llama_sampler_sample(self._chain, ctx, index))
        logits = lib.llama_get_logits_ith(ctx, index)
        token = candidates.choose(self._chain, logits)
        if not candidates.allows(self._grammar, token):
            token = candidates.choose(self._chain, logits, self._grammar)
        lib.llama_sampler_accept(self._grammar, token)
        lib.llama_sampler_accept(self._chain, token)
        return token

    def free(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None


class _Candidates:
    """A reusable llama_token_data_array over the whole vocabulary, filled from logits."""

    def __init__(self, lib: Any, n_vocab: int) -> None:
        import numpy as np  # a dependency of llama-cpp-python; needed only with a grammar

        self._lib = lib
        self._n_vocab = n_vocab
        self._data = (lib.llama_token_data * n_vocab)()
        self._view = np.frombuffer(
            self._data, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        )
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._np = np
        self._array = lib.llama_token_data_array(self._data, n_vocab, -1, False)
        self._one = (lib.llama_token_data * 1)()
        self._one_array = lib.llama_token_data_array(self._one, 1, -1, False)

    def choose(self, chain: Any, logits: Any, grammar: Any | None = None) -> int:
        """The token ``chain`` picks from ``logits`` (after ``grammar``, if given)."""
        view = self._view
        view["id"] = self._ids
        view["logit"] = self._np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        view["p"] = 0.0
        array = self._array
        array.size, array.selected, array.sorted = self._n_vocab, -1, False
        pointer = ctypes.byref(array)
        if grammar is not None:
            self._lib.llama_sampler_apply(grammar, pointer)
        self._lib.llama_sampler_apply(chain, pointer)
        return int(self._data[array.selected].id)

    def allows(self, grammar: Any, token: int) -> bool:
        """Whether ``grammar``, in its present state, accepts ``token`` next."""
        one = self._one[0]
        one.id, one.logit, one.p = token, 1.0, 0.0
        array = self._one_array
        array.size, array.selected, array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(grammar, ctypes.byref(array))
        return not math.isinf(one.logit)


def build_sampler(
    lib: Any,
    vocab: Any,
    options: SamplingOptions,
    seed: int,
    tools: ToolGrammar | None = None,
) -> Sampler:
    """The sampler for one answer; a tool grammar takes the place of the user's grammar."""
    grammar_text = tools or options.grammar
    grammar = grammar_sampler(lib, vocab, grammar_text) if grammar_text else None
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if options.repeat_penalty != 1.0:
        args: tuple[float, ...] = (64, options.repeat_penalty, 0.0, 0.0)
        if len(lib.llama_sampler_init_penalties.argtypes) == 5:  # builds that take n_vocab
            args = (lib.llama_vocab_n_tokens(vocab), *args)
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(*args))
    if options.temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return Sampler(lib, vocab, chain, grammar)
    if options.top_k > 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(options.top_k))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(options.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(options.min_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(options.temperature))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return Sampler(lib, vocab, chain, grammar)

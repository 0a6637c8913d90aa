"""Draft-model speculation: a small model with the target's vocabulary drafts its greedy
continuation, and the scheduler verifies it in one batch as it verifies n-gram drafts.

The draft model has a context of its own beside each scheduler's, one sequence per
slot, which holds the tokens of the slot's answer. It is brought up to date lazily,
when the answer asks for drafts: the sequence keeps the longest prefix it shares
with the answer's tokens and evaluates the rest. That one step is the prompt on the
first draft, a chat's earlier turns kept (prefix reuse), and the roll-back after a
rejected draft: the cells of drafts the target did not keep leave the sequence then.
A batch's sequence may copy another's cells, as the target's slots do.

Drafting stops early where the draft model is unsure (its likeliest token under
``P_MIN``, as llama.cpp's ``--draft-p-min``), at an end-of-generation token and at
the answer's limit; the length otherwise adapts to how often drafts come true.
What the drafts cost is the draft model's steps plus the target's larger batch: on
this CPU that never pays for the bundled model drafting for itself (docs/performance.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcli.engine import native
from gptcli.engine.base import Cancellation
from gptcli.engine.scheduler import BATCH_TOKENS, decode_run
from gptcli.engine.slots import SHARED_PREFIX_MIN, Layout, round_up_cells
from gptcli.engine.speculate import NGRAM_COST, Acceptance, Drafter, best_length
from gptcli.errors import ModelError, UsageError
from gptcli.tokens import common_prefix

P_MIN = 0.75  # the draft model's likeliest token must have this probability (llama.cpp's)
# What a drafted token is taken to cost when choosing the length: as for --speculate ngram,
# a nominal cost, so that the length follows the acceptance rate.
DRAFT_COST = NGRAM_COST
VOCAB_SIZE_DIFFERENCE = 128  # llama.cpp's tolerance: Qwen's sizes differ by padding
VOCAB_FIRST_CHECKED = 5  # llama.cpp compares token texts from here on
VOCAB_SAMPLE = 4096  # tokens compared evenly over the vocabulary, besides both ends
VOCAB_ENDS = 512  # where control tokens usually sit: the first and last ids
ABORTABLE_FROM = 32  # tokens in a catch-up batch from which Ctrl-C may stop llama.cpp in it


@dataclass(frozen=True)
class DraftOptions:
    """A draft model to load beside the target: its file, drafts' length, CPU buffers."""

    path: Path
    max_tokens: int = 16
    extra_buffers: bool = True


@dataclass(frozen=True)
class Placement:
    """Where the target runs, which its draft model follows: GPU layers, threads, attention."""

    gpu_layers: int
    threads: int
    flash: int


def vocabulary_difference(lib: Any, target: Any, draft: Any) -> str | None:
    """What makes ``draft``'s vocabulary unfit to draft for ``target``'s (None: nothing),
    the checks of llama.cpp's ``common_speculative_are_compatible`` on a sample of tokens."""
    if lib.llama_vocab_type(target) != lib.llama_vocab_type(draft):
        return "it has another kind of tokenizer"
    for name, adds, token in (
        ("beginning-of-text", lib.llama_vocab_get_add_bos, lib.llama_vocab_bos),
        ("end-of-text", lib.llama_vocab_get_add_eos, lib.llama_vocab_eos),
    ):
        if adds(target) != adds(draft) or (adds(target) and token(target) != token(draft)):
            return f"its {name} token differs"
    sizes = int(lib.llama_vocab_n_tokens(target)), int(lib.llama_vocab_n_tokens(draft))
    if abs(sizes[0] - sizes[1]) > VOCAB_SIZE_DIFFERENCE:
        return f"its vocabulary has {sizes[1]:,} tokens, this model's {sizes[0]:,}"
    shared = min(sizes)
    named = (lib.llama_vocab_eot, lib.llama_vocab_nl, lib.llama_vocab_sep, lib.llama_vocab_pad)
    ids = {
        *range(VOCAB_FIRST_CHECKED, min(shared, VOCAB_ENDS)),
        *range(max(VOCAB_FIRST_CHECKED, shared - VOCAB_ENDS), shared),
        *range(VOCAB_FIRST_CHECKED, shared, max(1, shared // VOCAB_SAMPLE)),
        *(int(special(target)) for special in named),
    }
    text = lib.llama_vocab_get_text
    for token in sorted(i for i in ids if VOCAB_FIRST_CHECKED <= i < shared):
        here, there = text(target, token), text(draft, token)
        if here != there:
            shown = [(t or b"").decode("utf-8", errors="replace") for t in (there, here)]
            return f"token {token} is {shown[0]!r} there and {shown[1]!r} here"
    return None


class DraftModel:
    """A draft model loaded beside the target, its vocabulary checked against the target's
    (UsageError where it differs); ``open`` gives each scheduler a context on it."""

    def __init__(
        self,
        lib: Any,
        options: DraftOptions,
        target_vocab: Any,
        placement: Placement,
        cancel: Cancellation,
    ) -> None:
        self.lib = lib
        self.options = options
        self.placement = placement
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = placement.gpu_layers
        mparams.use_extra_bufts = options.extra_buffers
        self.model: Any = native.load_model(lib, options.path, mparams, cancel)
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.target_tokens = int(lib.llama_vocab_n_tokens(target_vocab))
        problem = vocabulary_difference(lib, target_vocab, self.vocab)
        if problem is not None:
            self.close()
            path = options.path
            raise UsageError(f"the draft model {path} cannot draft for this model: {problem}")

    def open(self, layout: Layout, cancelled: Callable[[], bool]) -> DraftContext:
        """A context whose sequences mirror the slots of ``layout``; ``cancelled`` says
        when Ctrl-C asks the drafting to stop."""
        return DraftContext(self, layout, cancelled)

    def close(self) -> None:
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None


class DraftContext:
    """The draft model's context beside one scheduler's: sequence i holds what slot i's
    answer has evaluated (up to the drafts it will verify), brought up to date on demand."""

    def __init__(self, model: DraftModel, layout: Layout, cancelled: Callable[[], bool]) -> None:
        import numpy as np  # a dependency of llama-cpp-python; only drafting needs it

        self._np = np
        self._model = model
        self._lib = lib = model.lib
        self._layout = layout
        self._cancelled = cancelled
        self._cells: list[list[int]] = [[] for _ in range(layout.slots)]
        self._ctx: Any = None
        self._size = 0
        self._failed = False
        self._n_vocab = int(lib.llama_vocab_n_tokens(model.vocab))
        self._batch = lib.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._aborting = False

        @lib.ggml_abort_callback  # type: ignore[untyped-decorator]
        def on_abort(user_data: ctypes.c_void_p) -> bool:
            return self._cancelled()

        self._on_abort = on_abort
        if not self._resize(layout.initial if layout.grow else layout.cells):
            self.close()
            raise ModelError(
                f"llama.cpp could not create a context for the draft model {model.options.path}"
            )

    def drafter(self, seq: int, prompt: Sequence[int]) -> Drafter:
        return ModelDrafter(self, seq, prompt)

    @property
    def max_tokens(self) -> int:
        return self._model.options.max_tokens

    # -- the context -----------------------------------------------------------

    def _resize(self, cells: int) -> bool:
        """A new context of ``cells`` per sequence (empty); False where llama.cpp refuses."""
        lib, layout, placement = self._lib, self._layout, self._model.placement
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = cells * layout.slots
        if layout.slots > 1:
            cparams.n_seq_max = layout.slots
            cparams.kv_unified = False  # a stream of its own per sequence, as the target's
        cparams.n_batch = cparams.n_ubatch = min(cells, BATCH_TOKENS)
        cparams.n_threads = cparams.n_threads_batch = placement.threads
        cparams.no_perf = True
        cparams.flash_attn_type = placement.flash
        ctx = lib.llama_init_from_model(self._model.model, cparams)
        if not ctx:
            self._failed = True
            return False
        if self._ctx:
            lib.llama_free(self._ctx)
        self._ctx, self._size, self._aborting = ctx, cells, False
        self._n_batch = min(cells, BATCH_TOKENS)
        self._memory = lib.llama_get_memory(ctx)
        self._cells = [[] for _ in range(layout.slots)]
        return True

    def _room(self, cells: int) -> bool:
        """Whether a sequence may hold ``cells`` tokens (a lone one grows, as the target's)."""
        if cells <= self._size:
            return True
        layout = self._layout
        if self._failed or not layout.grow or cells > layout.cells:
            return False
        return self._resize(min(layout.cells, max(round_up_cells(cells), 2 * self._size)))

    def _forget(self, seq: int, position: int) -> None:
        if not self._lib.llama_memory_seq_rm(self._memory, seq, position, -1):
            self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
            position = 0
        del self._cells[seq][position:]

    def _abort_on(self, wanted: bool) -> None:
        if wanted != self._aborting:
            callback = self._on_abort if wanted else self._lib.ggml_abort_callback()
            self._lib.llama_set_abort_callback(self._ctx, callback, None)
            self._aborting = wanted

    # -- drafting --------------------------------------------------------------

    def draft(self, seq: int, tokens: Sequence[int], length: int) -> list[int]:
        """Up to ``length`` greedy tokens to follow ``tokens`` (the answer's so far, the
        token the target evaluates next last): fewer where the draft model is unsure."""
        if length <= 0 or self._cancelled() or not self._room(len(tokens) + length):
            return []
        if not self._catch_up(seq, tokens):
            return []
        drafts: list[int] = []
        while True:
            token = self._likeliest()
            if token < 0 or token >= self._model.target_tokens:
                break
            drafts.append(token)
            if len(drafts) >= length or self._cancelled():
                break
            if not self._evaluate(seq, [token]):
                break
        return drafts

    def _catch_up(self, seq: int, tokens: Sequence[int]) -> bool:
        """Make sequence ``seq`` hold ``tokens``, with the last one's logits."""
        cells = self._cells[seq]
        limit = len(tokens) - 1  # the last token is evaluated again, for its logits
        kept = self._share(seq, tokens, common_prefix(cells, tokens, limit))
        if kept < len(cells):
            self._forget(seq, kept)
        return self._evaluate(seq, tokens[kept:])

    def _share(self, seq: int, tokens: Sequence[int], kept: int) -> int:
        """Copy another sequence's cells where they give ``SHARED_PREFIX_MIN`` more tokens."""
        best, source = kept + SHARED_PREFIX_MIN - 1, -1
        for other, cells in enumerate(self._cells):
            if other != seq:
                common = common_prefix(cells, tokens, len(tokens) - 1)
                if common > best:
                    best, source = common, other
        if source < 0:
            return kept
        self._lib.llama_memory_seq_cp(self._memory, source, seq, -1, -1)
        self._lib.llama_memory_seq_rm(self._memory, seq, best, -1)
        self._cells[seq] = self._cells[source][:best]
        return best

    def _evaluate(self, seq: int, tokens: Sequence[int]) -> bool:
        """Decode ``tokens`` after ``seq``'s cells, logits at the last; False on failure
        or Ctrl-C (what was being decoded leaves the cache)."""
        lib, batch, cells = self._lib, self._batch, self._cells[seq]
        self._abort_on(len(tokens) >= ABORTABLE_FROM)
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            first = len(cells)
            if decode_run(lib, self._ctx, batch, seq, first, chunk) != 0 or self._cancelled():
                self._forget(seq, first)
                return False
            cells.extend(chunk)
        return True

    def _likeliest(self) -> int:
        """The draft model's likeliest next token, or -1 where its probability is under
        ``P_MIN`` or it ends the text."""
        np, lib = self._np, self._lib
        pointer = lib.llama_get_logits_ith(self._ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        token = int(logits.argmax())
        if lib.llama_vocab_is_eog(self._model.vocab, token):
            return -1
        probability = 1.0 / float(np.exp(logits - logits[token]).sum())
        return token if probability >= P_MIN else -1

    def close(self) -> None:
        lib = self._lib
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None


class ModelDrafter(Acceptance):
    """One answer's drafts from the draft model: its greedy continuation of the answer's
    tokens, as long as the acceptance rate says (at least one), at most ``--draft-max``."""

    def __init__(self, context: DraftContext, seq: int, prompt: Sequence[int]) -> None:
        super().__init__()
        self._context = context
        self._seq = seq
        self._tokens = list(prompt)

    def push(self, token: int) -> None:
        self._tokens.append(token)

    def draft(self, limit: int, cost: float) -> list[int]:
        most = min(limit, self._context.max_tokens)
        if most <= 0:
            return []
        length = max(1, best_length(self.acceptance, DRAFT_COST, most))
        return self._context.draft(self._seq, self._tokens, length)

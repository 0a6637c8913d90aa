"""The in-process llama.cpp backend, driven through llama.h's C API.

Decoding is a loop over llama.h calls (batch decode, a native sampler chain,
one token's piece at a time through an incremental UTF-8 decoder) rather than
llama-cpp-python's high-level completion path, which re-detokenizes the whole
answer on every token. The KV cache is kept between calls: a new prompt
re-uses the longest common prefix with what is already evaluated, so turn N of
a conversation only processes its new tokens.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcli.config import SamplingOptions, ThinkMode
from gptcli.engine import native
from gptcli.engine.base import (
    AnswerClock,
    Cancellation,
    Event,
    FinishReason,
    Message,
    ModelDetails,
    TextDelta,
    ToolRequest,
    ToolSpec,
    Usage,
)
from gptcli.engine.cpuload import CpuSample, busy_elsewhere, default_threads
from gptcli.engine.grammar import ToolGrammar, tool_grammar
from gptcli.engine.modelfile import ModelFileInfo, read_model_file
from gptcli.engine.sampler import Sampler, build_sampler
from gptcli.engine.template import CHATML_TEMPLATE, ChatTemplate, PromptPiece, TemplateError
from gptcli.engine.textstream import AnswerText
from gptcli.engine.thinking import (
    HARMONY,
    Splitter,
    format_of_template,
    prompt_opens_thinking,
    split_events,
    splitter_for,
    template_switches,
)
from gptcli.engine.toolcalls import parse_tool_events, parser_for
from gptcli.engine.toolformat import offered
from gptcli.errors import ContextOverflowError, GptcliError, ModelError, UsageError

DEFAULT_CONTEXT = 4096
INITIAL_CONTEXT = 1024  # the context grows from here, by doubling, up to the window
CONTEXT_STEP = 256  # llama.cpp rounds context sizes up to this
MAX_CONTEXT = 2**32 - CONTEXT_STEP  # llama.cpp's n_ctx is a uint32
ALL_LAYERS = 0x7FFFFFFF


@dataclass(frozen=True)
class LoadOptions:
    """Everything that decides how a model file becomes a running context."""

    path: Path
    ctx: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    extra_buffers: bool = True
    debug: bool = False


def physical_cores() -> int:
    """Physical cores (not hyper-threads): llama.cpp decodes fastest with one thread each."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cores = set()
            physical = ""
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    cores.add((physical, value.strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2) if (os.cpu_count() or 1) > 1 else 1


def _chatml(bos: str, eos: str) -> ChatTemplate:
    return ChatTemplate("built-in ChatML (fallback)", CHATML_TEMPLATE, bos, eos)


def _round_up(cells: int) -> int:
    return -(-cells // CONTEXT_STEP) * CONTEXT_STEP


def physical_memory() -> int | None:
    """Bytes of RAM in this machine, if the system says."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class _Progress:
    """How far an answer got and why it ended, as the decode loop goes."""

    reason: FinishReason
    produced: int = 0


def _set_state(lib: Any, ctx: Any, state: Any, length: int) -> bool:
    """Load a serialised KV cache into ``ctx``; on failure leave it empty."""
    if lib.llama_state_seq_set_data(ctx, state, length, 0) != 0:
        return True
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    return False


class LlamaBackend:
    """A GGUF model loaded in this process, answering conversations as event streams."""

    def __init__(
        self,
        options: LoadOptions,
        cancel: Cancellation | None = None,
        info: ModelFileInfo | None = None,
    ) -> None:
        loading = CpuSample.take()  # how busy the machine is, measured while the model loads
        self._info = info or read_model_file(options.path)
        self._lib = native.bindings(options.debug)
        self._notices: list[str] = []
        self._model: Any = None
        self._ctx: Any = None
        self._cancel_for_abort = cancel or Cancellation()
        self._load_model(options)
        self._busy_elsewhere = busy_elsewhere(loading, CpuSample.take())
        self._create_context(options)

        @self._lib.ggml_abort_callback  # type: ignore[untyped-decorator]
        def on_abort(user_data: ctypes.c_void_p) -> bool:
            return self._cancel_for_abort.cancelled

        self._on_abort = on_abort
        self._evaluated: list[int] = []
        self._token_bytes: int | None = None
        self._pieces: dict[int, bytes] = {}  # a generated token's piece, looked up once
        self._one = (self._lib.llama_token * 1)()  # the batch every generated token goes in
        self._one_batch = self._lib.llama_batch_get_one(self._one, 1)
        self._llama_decode = self._lib.llama_decode  # one lookup per token, not two
        self._template = self._load_template()
        self._special_pieces = False  # harmony's channels are control tokens, shown as text

    def _load_model(self, options: LoadOptions) -> None:
        """The weights, offloaded as asked; Ctrl-C during the load stops llama.cpp's loader."""
        lib, cancel = self._lib, self._cancel_for_abort
        mparams = lib.llama_model_default_params()
        gpu_layers = options.gpu_layers
        if gpu_layers is None or gpu_layers < 0:
            gpu_layers = ALL_LAYERS if gpu_layers == -1 or lib.llama_supports_gpu_offload() else 0
        self._gpu_layers = gpu_layers
        mparams.n_gpu_layers = gpu_layers
        mparams.use_extra_bufts = options.extra_buffers

        @lib.llama_progress_callback  # type: ignore[untyped-decorator]
        def on_progress(progress: float, user_data: ctypes.c_void_p) -> bool:
            return not cancel.cancelled

        self._on_progress = on_progress  # kept alive as long as llama.cpp may call it
        mparams.progress_callback = on_progress
        self._model = lib.llama_model_load_from_file(str(options.path).encode(), mparams)
        if not self._model:
            if cancel.cancelled:
                raise KeyboardInterrupt
            raise ModelError(
                f"llama.cpp could not load {options.path} (run with --debug for details)"
            )
        self._vocab = lib.llama_model_get_vocab(self._model)

    def _create_context(self, options: LoadOptions) -> None:
        """The KV cache and compute buffers: context size, threads, attention kernel.

        The window (``--ctx``, else the model's trained context up to 4,096) is what
        a conversation may fill; the context starts smaller and doubles as it fills,
        carrying its cache over. Decoding in a 4,096-cell cache was 2-4% slower than
        in a 1,024-cell one here at equal use, and its KV buffer takes 90 MiB.
        """
        lib = self._lib
        trained = self._info.context_length
        requested = options.ctx or min(trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
        self._window = _round_up(requested)
        self._check_window(requested, trained)
        self._threads = options.threads or default_threads(physical_cores(), self._busy_elsewhere)
        if options.debug and not options.threads:
            busy = self._busy_elsewhere
            seen = "unknown" if busy is None else f"{busy:.1f}"
            self._notices.append(f"{self._threads} threads (cores busy elsewhere: {seen})")
        # Flash attention decodes ~28% slower on CPU at 1k context; let GPU builds choose.
        on_gpu = self._gpu_layers > 0 and lib.llama_supports_gpu_offload()
        self._flash = (
            lib.LLAMA_FLASH_ATTN_TYPE_AUTO if on_gpu else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self._path = options.path
        self._size = 0
        self._use_context(self._new_context(min(self._window, INITIAL_CONTEXT)))

    def _check_window(self, requested: int, trained: int | None) -> None:
        """Refuse a window whose KV cache no memory here could hold (the context grows
        into it, so it would fail mid-conversation); note what llama.cpp would warn of."""
        needed = self._window * self.kv_bytes_per_cell()
        memory = physical_memory()
        if self._window > MAX_CONTEXT or (memory is not None and needed > memory):
            self.close()
            have = f"; this machine has {memory / 2**30:,.1f} GiB" if memory is not None else ""
            trained_note = f"; the model was trained on {trained:,}" if trained else ""
            raise UsageError(
                f"a {self._window:,}-token context window needs {needed / 2**30:,.1f} GiB of KV "
                f"cache for this model{have} (try a smaller --ctx{trained_note})"
            )
        if self._window != requested:
            self._notices.append(
                f"the context window is {self._window:,} tokens, not {requested:,}: llama.cpp "
                f"allocates it in steps of {CONTEXT_STEP}"
            )
        if trained and self._window > trained:
            self._notices.append(
                f"the context window ({self._window:,} tokens) is larger than the model's "
                f"trained context ({trained:,}): past that, answers may lose coherence"
            )

    def _new_context(self, size: int) -> Any:
        lib = self._lib
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = size
        cparams.n_batch = min(size, 512)
        cparams.n_ubatch = min(size, 512)
        cparams.n_threads = self._threads
        cparams.n_threads_batch = self._threads
        cparams.no_perf = True
        cparams.flash_attn_type = self._flash
        ctx = lib.llama_init_from_model(self._model, cparams)
        if not ctx:
            if not self._ctx:
                self.close()
            raise ModelError(
                f"llama.cpp could not create a {size}-token context for {self._path} "
                "(out of memory? try a smaller --ctx)"
            )
        return ctx

    def _use_context(self, ctx: Any) -> None:
        lib = self._lib
        if self._ctx:
            lib.llama_free(self._ctx)
        self._ctx = ctx
        self._size = lib.llama_n_ctx(ctx)
        self._n_batch = min(self._size, 512)
        self._memory = lib.llama_get_memory(ctx)

    def _reserve(self, cells: int) -> None:
        """Grow the context to hold ``cells`` tokens (up to the window), keeping its cache."""
        if cells <= self._size or self._size >= self._window:
            return
        lib = self._lib
        size = min(self._window, max(_round_up(cells), 2 * self._size))
        ctx = self._new_context(size)
        if self._evaluated and not _set_state(lib, ctx, *self._state()):
            self._evaluated = []  # the next prompt is processed again in full
        self._use_context(ctx)

    # -- facts -------------------------------------------------------------

    @property
    def details(self) -> ModelDetails:
        return ModelDetails(
            name=self._info.name,
            path=str(self._info.path),
            architecture=self._info.architecture,
            quantization=self._info.quantization,
            context_size=self._window,
            trained_context=self._info.context_length,
            template_source=self._template.source,
        )

    @property
    def notices(self) -> Sequence[str]:
        return tuple(self._notices)

    @property
    def threads(self) -> int:
        return self._threads

    # -- tokens ------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._piece(token, special=True).decode("utf-8", errors="replace")

    def _load_template(self) -> ChatTemplate:
        lib = self._lib
        bos = self._token_text(lib.llama_vocab_bos(self._vocab))
        eos = self._token_text(lib.llama_vocab_eos(self._vocab))
        text = self._info.chat_template
        if text is not None:
            try:
                return ChatTemplate("model file", text, bos, eos)
            except TemplateError as exc:
                self._notices.append(f"{exc}; using the ChatML template instead")
        else:
            self._notices.append("the model file has no chat template; using ChatML")
        return _chatml(bos, eos)

    def tokenize(self, text: str, special: bool) -> list[int]:
        buf, count = self._tokens(text, special)
        return list(buf[:count])

    def _tokens(self, text: str, special: bool) -> tuple[Any, int]:
        """The tokens of ``text`` in a ctypes array (4 bytes each, not a Python int each)."""
        data = text.encode("utf-8", errors="surrogatepass")
        capacity = len(data) + 16
        buf = (self._lib.llama_token * capacity)()
        count = self._lib.llama_tokenize(
            self._vocab, data, len(data), buf, capacity, False, special
        )
        if count < 0:
            capacity = -count
            buf = (self._lib.llama_token * capacity)()
            count = self._lib.llama_tokenize(
                self._vocab, data, len(data), buf, capacity, False, special
            )
        return buf, count

    def token_bytes(self) -> int | None:
        """The longest token's text: byte-level BPE and SentencePiece cover every input byte
        with the bytes of some token's piece, so no token stands for more. Other tokenizers
        normalise text first (collapsing spaces, say) and promise no such limit."""
        if self._token_bytes is None:
            lib = self._lib
            kind = lib.llama_vocab_type(self._vocab)
            if kind not in (lib.LLAMA_VOCAB_TYPE_BPE, lib.LLAMA_VOCAB_TYPE_SPM):
                return None
            buf = ctypes.create_string_buffer(256)
            longest = 1
            for token in range(lib.llama_vocab_n_tokens(self._vocab)):
                size = lib.llama_token_to_piece(self._vocab, token, buf, 256, 0, True)
                longest = max(longest, -size if size < 0 else size)
            self._token_bytes = longest
        return self._token_bytes

    def _piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        size = self._lib.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if size < 0:
            buf = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buf, -size, 0, special)
        return buf.raw[:size]

    def _pieces_to_tokens(self, pieces: Sequence[PromptPiece]) -> list[int]:
        tokens: list[int] = []
        for piece in pieces:
            tokens.extend(self.tokenize(piece.text, special=piece.special))
        bos = self._lib.llama_vocab_bos(self._vocab)
        if self._lib.llama_vocab_get_add_bos(self._vocab) and bos >= 0 and tokens[:1] != [bos]:
            tokens.insert(0, bos)
        return tokens

    def prompt_tokens(self, messages: Sequence[Message], think: ThinkMode = "auto") -> list[int]:
        return self._pieces_to_tokens(self._prompt_pieces(messages, think))

    def _prompt_pieces(
        self, messages: Sequence[Message], think: ThinkMode, tools: Sequence[ToolSpec] = ()
    ) -> list[PromptPiece]:
        try:
            switches = template_switches(self._template.text, think)
            return self._template.render(messages, variables=switches, tools=tools)
        except TemplateError as exc:
            if self._template.source.startswith("built-in"):
                raise GptcliError(str(exc)) from exc
            self._notices.append(f"{exc}; using the ChatML template instead")
            self._template = _chatml(self._template.bos_token, self._template.eos_token)
            return self._template.render(messages, tools=tools)

    def count_tokens(self, messages: Sequence[Message], tools: ToolRequest | None = None) -> int:
        # As prompt_tokens, without a Python int per token: a long text is counted in
        # a few bytes per byte of text instead of about forty.
        total, first = 0, None
        for piece in self._prompt_pieces(messages, "auto", offered(tools)):
            buf, count = self._tokens(piece.text, piece.special)
            if count and first is None:
                first = buf[0]
            total += count
        bos = self._lib.llama_vocab_bos(self._vocab)
        if self._lib.llama_vocab_get_add_bos(self._vocab) and bos >= 0 and first != bos:
            total += 1
        return total

    # -- generation --------------------------------------------------------

    def _decode(self, tokens: Sequence[int]) -> int:
        array = (self._lib.llama_token * len(tokens))(*tokens)
        batch = self._lib.llama_batch_get_one(array, len(tokens))
        return int(self._lib.llama_decode(self._ctx, batch))

    def _forget_from(self, position: int) -> None:
        lib = self._lib
        if not lib.llama_memory_seq_rm(self._memory, 0, position, -1):
            lib.llama_memory_clear(self._memory, True)
            position = 0
        del self._evaluated[position:]

    def _prefill(
        self, tokens: Sequence[int], cancel: Cancellation
    ) -> tuple[int, FinishReason | None]:
        """Evaluate ``tokens`` after the longest cached prefix; returns (reused, early finish)."""
        reused = 0
        for cached, new in zip(self._evaluated, tokens, strict=False):
            if cached != new:
                break
            reused += 1
        reused = min(reused, len(tokens) - 1)  # the last prompt token must produce logits
        self._forget_from(reused)
        self._reserve(len(tokens))
        self._cancel_for_abort = cancel
        self._lib.llama_set_abort_callback(self._ctx, self._on_abort, None)
        try:
            for start in range(reused, len(tokens), self._n_batch):
                chunk = tokens[start : start + self._n_batch]
                status = self._decode(chunk)
                if status == 2 or cancel.cancelled:
                    self._forget_from(start)
                    return reused, "interrupted"
                if status != 0:
                    self._forget_from(0)
                    raise GptcliError(f"llama.cpp failed to process the prompt (code {status})")
                self._evaluated.extend(chunk)
        finally:
            self._lib.llama_set_abort_callback(self._ctx, self._lib.ggml_abort_callback(), None)
        return reused, None

    def _sampler(
        self, options: SamplingOptions, seed: int, tools: ToolGrammar | None = None
    ) -> Sampler:
        return build_sampler(self._lib, self._vocab, options, seed, tools)

    def check_fits(self, prompt_tokens: int, options: SamplingOptions) -> None:
        room = self._window - prompt_tokens
        wanted = options.max_tokens or 1
        if room < wanted:
            raise ContextOverflowError(
                f"the input is {prompt_tokens} tokens and {wanted} more are needed for the "
                f"answer, but the context window holds {self._window} (try a larger --ctx)",
                needed=prompt_tokens + wanted,
                available=self._window,
            )

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        """The reply; with tools, calls in the template's format come out as ToolCalled
        (engine/toolcalls.py), constrained by a grammar (engine/grammar.py)."""
        specs = offered(tools)
        tokens, splitter, special = self.prompt_for(messages, options.think, specs)
        self.check_fits(len(tokens), options)
        seed = options.seed if options.seed is not None else secrets.randbelow(2**32 - 1)
        tool_fmt = self._template.tool_format
        # The markers of native tool formats are control tokens, as harmony's channels are.
        special = special or (bool(specs) and tool_fmt != "generic")
        if special != self._special_pieces:
            self._pieces.clear()  # pieces were looked up the other way
            self._special_pieces = special
        grammar = tool_grammar(tool_fmt, specs, tools.choice) if tools and specs else None
        events = split_events(self._generate(tokens, options, seed, cancel, grammar), splitter)
        return parse_tool_events(events, parser_for(tool_fmt, specs)) if specs else events

    def prompt_for(
        self, messages: Sequence[Message], think: ThinkMode, tools: Sequence[ToolSpec] = ()
    ) -> tuple[list[int], Splitter, bool]:
        """The prompt's tokens, the splitter that takes the thinking out of its answer,
        and whether the answer's pieces are read with special tokens (harmony's markup)."""
        pieces = self._prompt_pieces(messages, think, tools)
        fmt = format_of_template(self._template.text)
        tail = pieces[-1].text if pieces and pieces[-1].special else ""
        splitter = splitter_for(fmt, inside=prompt_opens_thinking(tail, fmt))
        return self._pieces_to_tokens(pieces), splitter, fmt == HARMONY

    def _generate(
        self,
        tokens: list[int],
        options: SamplingOptions,
        seed: int,
        cancel: Cancellation,
        grammar: ToolGrammar | None = None,
    ) -> Iterator[Event]:
        clock = AnswerClock()
        reused, early = self._prefill(tokens, cancel)
        clock.prefilled = time.perf_counter()
        progress = _Progress(early or "length")
        if early is None:
            sampler = self._sampler(options, seed, grammar)
            try:
                for text in self._answer(sampler, options, cancel, progress):
                    clock.text_shown()
                    yield TextDelta(text)
            finally:
                sampler.free()
        usage = Usage(len(tokens), progress.produced)
        yield clock.finished(progress.reason, usage, reused, seed)

    def _answer(
        self, sampler: Sampler, options: SamplingOptions, cancel: Cancellation, progress: _Progress
    ) -> Iterator[str]:
        """The answer's text, token by token, each token's decode started before its text.

        llama.cpp on a GPU computes asynchronously until the logits are read, so the
        host turns token t into text, checks the stop strings and hands out the
        event while decode(t) runs; sampling t+1 waits for it. End of generation,
        the token limit and a full window are known before the launch; a stop
        string only after it, so that token's decode was for nothing and it leaves
        the cache again (as it always did, it is not part of the answer).
        """
        sample, is_eog = sampler.sample, self._lib.llama_vocab_is_eog
        vocab, pieces, answer = self._vocab, self._pieces, AnswerText(options.stop)
        feed = answer.feed
        limit = options.max_tokens if options.max_tokens is not None else sys.maxsize
        ignore_eos, produced = options.ignore_eos, 0
        while produced < limit:
            if cancel.cancelled:
                progress.reason = "interrupted"
                break
            token = sample(self._ctx, -1)  # waits for the previous decode
            end_of_turn = is_eog(vocab, token)
            if end_of_turn and not ignore_eos:
                progress.reason = "stop"
                return
            progress.produced = produced = produced + 1
            # The last token is evaluated with the next prompt, if any.
            launched = produced < limit and self._decode_one(token)
            piece = b"" if end_of_turn else pieces.get(token)
            text, stopped = feed(self._cache_piece(token) if piece is None else piece)
            if text:
                yield text
            if stopped:
                progress.reason = "stop"
                if launched:
                    self._lib.llama_synchronize(self._ctx)
                    self._forget_from(len(self._evaluated) - 1)
                return
            if not launched:
                break  # the token limit, or the context window is full
        tail = answer.flush()
        if tail:
            yield tail

    def _cache_piece(self, token: int) -> bytes:
        piece = self._pieces[token] = self._piece(token, self._special_pieces)
        return piece

    def _decode_one(self, token: int) -> bool:
        """Start evaluating a generated token; False when the window has no room left."""
        if len(self._evaluated) >= self._size:
            self._reserve(len(self._evaluated) + 1)
            if len(self._evaluated) >= self._size:
                return False
        self._one[0] = token
        status = self._llama_decode(self._ctx, self._one_batch)
        if status == 1:
            return False
        if status != 0:
            self._forget_from(0)
            raise GptcliError(f"llama.cpp failed while generating (code {status})")
        self._evaluated.append(token)
        return True

    # -- what engine/batch.py builds on ------------------------------------

    @property
    def lib(self) -> Any:
        """The ctypes bindings this model was loaded with."""
        return self._lib

    @property
    def vocab(self) -> Any:
        return self._vocab

    @property
    def on_gpu(self) -> bool:
        return bool(self._gpu_layers > 0 and self._lib.llama_supports_gpu_offload())

    def kv_bytes_per_cell(self) -> int:
        """Bytes of (f16) K and V cache one token of one sequence takes."""
        lib, model = self._lib, self._model
        heads = max(1, lib.llama_model_n_head(model))
        head_dim = lib.llama_model_n_embd(model) // heads
        layers, kv_heads = lib.llama_model_n_layer(model), lib.llama_model_n_head_kv(model)
        return int(2 * 2 * layers * kv_heads * head_dim)

    def parallel_context(self, sequences: int, cells_each: int, n_batch: int) -> Any:
        """A new context on this model for ``sequences`` independent sequences.

        Each sequence gets a KV stream of its own of ``cells_each`` cells (kv_unified
        off): attention then runs over one sequence's cells only, which llama.h
        recommends for sequences that share no long prefix. The caller frees it.
        """
        lib = self._lib
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = sequences * cells_each
        cparams.n_seq_max = sequences
        cparams.kv_unified = False
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = self._threads
        cparams.n_threads_batch = self._threads
        cparams.no_perf = True
        cparams.flash_attn_type = self._flash
        ctx = lib.llama_init_from_model(self._model, cparams)
        if not ctx:
            raise ModelError(
                f"llama.cpp could not create a context of {sequences} x {cells_each} tokens "
                f"for {self._path} (out of memory? try a smaller --parallel or --ctx)"
            )
        return ctx

    def sampler(self, options: SamplingOptions, seed: int) -> Sampler:
        """A new sampler chain for one answer (grammar, penalties, temperature, seed)."""
        return self._sampler(options, seed)

    def piece(self, token: int, special: bool = False) -> bytes:
        return self._piece(token, special)

    # -- state snapshots ---------------------------------------------------

    def state_key(self) -> dict[str, object]:
        """What a saved KV state is only valid for (with the model file's sha256)."""
        import hashlib

        return {
            "n_ctx": self._window,
            "template_sha256": hashlib.sha256(self._template.text.encode()).hexdigest(),
            "llama_cpp": native.engine_version(),
            "gpu_layers": self._gpu_layers,
        }

    def state_size(self) -> int:
        """Bytes ``export_state`` would return, without copying them."""
        return int(self._lib.llama_state_seq_get_size(self._ctx, 0))

    def export_state(self) -> tuple[list[int], bytes]:
        """The evaluated tokens and llama.cpp's serialised KV cache for them."""
        state, written = self._state()
        return list(self._evaluated), ctypes.string_at(state, written)

    def _state(self) -> tuple[Any, int]:
        """llama.cpp's serialised KV cache of the conversation, in a ctypes buffer."""
        lib = self._lib
        size = lib.llama_state_seq_get_size(self._ctx, 0)
        state = (ctypes.c_uint8 * size)()
        return state, lib.llama_state_seq_get_data(self._ctx, state, size, 0)

    def import_state(self, tokens: list[int], state: bytes) -> bool:
        """Restore a KV cache made by ``export_state``; on any failure start clean."""
        lib = self._lib
        vocab = lib.llama_vocab_n_tokens(self._vocab)
        if len(tokens) > self._window or any(not 0 <= t < vocab for t in tokens):
            return False
        self._forget_from(0)
        self._reserve(len(tokens) + 1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not _set_state(lib, self._ctx, buf, len(state)):
            return False
        self._evaluated = list(tokens)
        return True

    def close(self) -> None:
        lib = self._lib
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None
            native.release_freed_memory()

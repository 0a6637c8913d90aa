"""The in-process llama.cpp backend, driven through llama.h's C API.

This module loads the model, makes contexts, renders the chat template and
tokenizes. Decoding is engine/scheduler.py's: a loop over llama.h calls (batch
decode, a native sampler chain, one token's piece at a time through an
incremental UTF-8 decoder) rather than llama-cpp-python's high-level completion
path, which re-detokenizes the whole answer on every token. A conversation is
one slot whose KV cache is kept between calls: a new prompt re-uses the longest
common prefix with what is already evaluated, so turn N only processes its new
tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcli.config import SamplingOptions, ThinkMode
from gptcli.engine import cpuload, native
from gptcli.engine.abilities import BatchEngine
from gptcli.engine.base import (
    Cancellation,
    Event,
    MediaFacts,
    Message,
    ModelDetails,
    ToolRequest,
    ToolSpec,
)
from gptcli.engine.contexts import (
    ContextMaker,
    attention_kernel,
    check_window,
    requested_window,
)
from gptcli.engine.draft import DraftModel, DraftOptions, Placement
from gptcli.engine.grammar import ToolGrammar, tool_grammar
from gptcli.engine.jobs import SlotBatch, default_parallel
from gptcli.engine.kvcache import DEFAULT_KV_TYPE, cell_bytes, model_shape, shape_of
from gptcli.engine.modelfile import ModelFileInfo, read_model_file
from gptcli.engine.projector import Projector, media_parts
from gptcli.engine.promptcache import PromptCache, PromptStore, PromptWrite
from gptcli.engine.scheduler import BATCH_TOKENS, Scheduler
from gptcli.engine.slots import Layout, longest_piece, round_up_cells, token_piece
from gptcli.engine.speculate import CPU_COST, GPU_COST
from gptcli.engine.template import CHATML_TEMPLATE, ChatTemplate, PromptPiece, TemplateError
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
from gptcli.media import MEDIA_HINT, MediaItem

INITIAL_CONTEXT = 1024  # the context grows from here, by doubling, up to the window
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
    kv_type: str = DEFAULT_KV_TYPE
    prompt_cache: PromptStore | None = None  # earlier runs' prompts (engine/promptcache.py)
    mmproj: Path | None = None  # a multimodal projector to load beside the model
    mmproj_optional: bool = False  # found, not asked for: one that does not fit is a notice
    draft: DraftOptions | None = None  # a draft model to speculate with (engine/draft.py)


def _chatml(bos: str, eos: str) -> ChatTemplate:
    return ChatTemplate("built-in ChatML (fallback)", CHATML_TEMPLATE, bos, eos)


class LlamaBackend:
    """A GGUF model loaded in this process, answering conversations as event streams."""

    def __init__(
        self,
        options: LoadOptions,
        cancel: Cancellation | None = None,
        info: ModelFileInfo | None = None,
    ) -> None:
        loading = (
            cpuload.CpuSample.take()
        )  # how busy the machine is, measured while the model loads
        self._info = info or read_model_file(options.path)
        self._lib = native.bindings(options.debug)
        self._notices: list[str] = []
        self._model: Any = None
        self._ctx: Any = None
        self._scheduler: Scheduler | None = None
        self._projector: Projector | None = None
        self._draft: DraftModel | None = None
        self._load_model(options, cancel or Cancellation())
        self._busy_elsewhere = cpuload.busy_elsewhere(loading, cpuload.CpuSample.take())
        self._create_context(options)
        if options.mmproj is not None:
            self._load_projector(options)
        self._prompt_store = options.prompt_cache
        self._prompt_cache = self._new_prompt_cache()
        if options.draft is not None:
            self._load_draft(options.draft, cancel or Cancellation())
        self._token_bytes: int | None = None
        self._template = self._load_template()

    def _load_model(self, options: LoadOptions, cancel: Cancellation) -> None:
        """The weights, offloaded as asked; Ctrl-C during the load stops llama.cpp's loader."""
        lib = self._lib
        mparams = lib.llama_model_default_params()
        gpu_layers = options.gpu_layers
        if gpu_layers is None or gpu_layers < 0:
            gpu_layers = ALL_LAYERS if gpu_layers == -1 or lib.llama_supports_gpu_offload() else 0
        self._gpu_layers = gpu_layers
        mparams.n_gpu_layers = gpu_layers
        mparams.use_extra_bufts = options.extra_buffers
        self._model = native.load_model(lib, options.path, mparams, cancel)
        self._vocab = lib.llama_model_get_vocab(self._model)

    def _create_context(self, options: LoadOptions) -> None:
        """The KV cache and compute buffers: context size, threads, attention kernel.

        Decoding in a 4,096-cell cache was 2-4% slower than in a 1,024-cell one here
        at equal use, and its KV buffer takes 90 MiB: the one-slot context starts at
        INITIAL_CONTEXT cells and grows into the window (engine/contexts.py).
        """
        lib = self._lib
        self._kv_type = options.kv_type
        trained = self._info.context_length
        requested = requested_window(options.ctx, trained)
        self._window = round_up_cells(requested)
        cell = self.kv_bytes_per_cell()
        try:
            self._notices += check_window(self._window, requested, trained, cell)
        except UsageError:
            self.close()
            raise
        busy, self._given_threads = self._busy_elsewhere, options.threads
        self._threads = options.threads or cpuload.default_threads(cpuload.physical_cores(), busy)
        if options.debug and not options.threads:
            self._notices.append(cpuload.thread_notice(self._threads, busy))
        self._flash = attention_kernel(lib, options.kv_type, self.on_gpu)
        self._contexts = ContextMaker(
            lib, self._model, options.path, self._threads, self._flash, options.kv_type
        )
        try:
            self._layout = Layout(1, self._window, True, min(self._window, INITIAL_CONTEXT))
            self._scheduler = Scheduler(lib, self._vocab, self._layout, self._new_context)
        except ModelError:
            self.close()
            raise
        self._scheduler.draft_cost = GPU_COST if self.on_gpu else CPU_COST
        self._scheduler.thread_watch = cpuload.watch_threads(options.threads, self._threads)

    def _load_projector(self, options: LoadOptions) -> None:
        """The multimodal projector, beside the model; the scheduler decodes its embeddings."""
        assert options.mmproj is not None
        try:
            self._projector = Projector(
                options.mmproj, self._lib, self._model, self._threads, self.on_gpu, options.debug
            )
        except GptcliError as exc:
            if options.mmproj_optional:
                self._notices.append(f"{exc.message}; images and audio are not taken")
                return
            self.close()
            raise
        self.scheduler.media = self._projector

    def _load_draft(self, options: DraftOptions, cancel: Cancellation) -> None:
        """The draft model, placed as the target, with a context beside the scheduler's."""
        placement = Placement(self._gpu_layers, self._threads, self._flash)
        try:
            self._draft = DraftModel(self._lib, options, self._vocab, placement, cancel)
            self._open_drafts(self.scheduler, self._layout)
        except BaseException:  # Ctrl-C in the load too: nothing stays loaded
            self.close()
            raise

    def _open_drafts(self, scheduler: Scheduler, layout: Layout) -> None:
        if self._draft is not None:

            def cancelled() -> bool:
                return scheduler.cancelled

            scheduler.drafts = self._draft.open(layout, cancelled)

    def _new_context(self, size: int) -> Any:
        """A context of ``size`` cells for one sequence (the scheduler frees it)."""
        return self._contexts.single(size, min(size, BATCH_TOKENS))

    @property
    def scheduler(self) -> Scheduler:
        """The one-slot scheduler that answers this backend's conversations."""
        assert self._scheduler is not None, "the backend is closed"
        return self._scheduler

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
            kv_type=self._kv_type,
            kv_bytes_per_token=self.kv_bytes_per_cell(),
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
        if self._token_bytes is None:
            self._token_bytes = longest_piece(self._lib, self._vocab)
        return self._token_bytes or None

    def _piece(self, token: int, special: bool = False) -> bytes:
        return token_piece(self._lib, self._vocab, token, special)

    def _pieces_to_tokens(self, pieces: Sequence[PromptPiece]) -> list[int]:
        tokens: list[int] = []
        for piece in pieces:
            for part in media_parts(self._projector, piece.text, piece.special):
                if isinstance(part, str):
                    tokens.extend(self.tokenize(part, special=piece.special))
                else:
                    tokens.extend(part)
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
            for part in media_parts(self._projector, piece.text, piece.special):
                if not isinstance(part, str):
                    first = part[0] if first is None else first
                    total += len(part)
                    continue
                buf, count = self._tokens(part, piece.special)
                if count and first is None:
                    first = buf[0]
                total += count
        bos = self._lib.llama_vocab_bos(self._vocab)
        if self._lib.llama_vocab_get_add_bos(self._vocab) and bos >= 0 and first != bos:
            total += 1
        return total

    # -- generation --------------------------------------------------------

    def check_fits(self, prompt_tokens: int, options: SamplingOptions) -> None:
        room = self._window - prompt_tokens
        wanted = options.max_tokens or 1
        if room < wanted:
            raise ContextOverflowError(
                f"the input is {prompt_tokens:,} tokens and {wanted:,} more are needed for the "
                f"answer, but the context window holds {self._window:,} (try a larger --ctx)",
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
        tool_fmt = self._template.tool_format
        # The markers of native tool formats are control tokens, as harmony's channels are.
        special = special or (bool(specs) and tool_fmt != "generic")
        grammar = tool_grammar(tool_fmt, specs, tools.choice) if tools and specs else None
        events = split_events(self._answer(tokens, options, cancel, special, grammar), splitter)
        return parse_tool_events(events, parser_for(tool_fmt, specs)) if specs else events

    def _answer(
        self,
        tokens: list[int],
        options: SamplingOptions,
        cancel: Cancellation,
        special: bool,
        grammar: ToolGrammar | None,
    ) -> Iterator[Event]:
        """The answer in the conversation's slot (its sampler made once the answer is read),
        the first one's prompt prefix from the prompt cache where it has one."""
        scheduler = self.scheduler
        request = scheduler.request(tokens, options, special, grammar)  # its clock starts
        if self._prompt_cache is not None:
            self._prompt_cache.restore(scheduler, tokens)
        yield from scheduler.answer(request, cancel)

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

    # -- many answers at once (engine/batch.py) ----------------------------

    @property
    def on_gpu(self) -> bool:
        return bool(self._gpu_layers > 0 and self._lib.llama_supports_gpu_offload())

    def kv_bytes_per_cell(self) -> int:
        """Bytes of K and V cache one token of one sequence takes, in the cache's type."""
        shape = shape_of(self._info.metadata) or model_shape(self._lib, self._model)
        return cell_bytes(shape, self._kv_type)

    def parallel_limit(self) -> int:
        return int(self._lib.llama_max_parallel_sequences())

    def default_parallel(self, cells_each: int) -> int:
        sequence = self.kv_bytes_per_cell() * cells_each
        return default_parallel(self.on_gpu, max(1, self._threads), sequence, self.parallel_limit())

    def open_slots(self, parallel: int, cells_each: int) -> BatchEngine:
        """A scheduler of ``parallel`` slots of ``cells_each`` cells in a context of its own."""

        def context(cells: int) -> Any:
            return self.parallel_context(parallel, cells, BATCH_TOKENS)

        layout = Layout(parallel, cells_each)
        scheduler = Scheduler(self._lib, self._vocab, layout, context)
        scheduler.draft_cost = self.scheduler.draft_cost
        scheduler.media = self._projector
        scheduler.thread_watch = cpuload.watch_threads(self._given_threads, self._threads)
        try:
            self._open_drafts(scheduler, layout)
        except ModelError:
            scheduler.close()
            raise
        return SlotBatch(self.prompt_for, scheduler, cells_each, self._new_prompt_cache())

    def parallel_context(self, sequences: int, cells_each: int, n_batch: int) -> Any:
        """A new context on this model for ``sequences`` independent sequences of
        ``cells_each`` cells each (engine/contexts.py). The caller frees it."""
        return self._contexts.parallel(sequences, cells_each, n_batch)

    # -- state snapshots ---------------------------------------------------

    def state_key(self) -> dict[str, object]:
        """What a saved KV state is only valid for (with the model file's sha256)."""
        key = self._contexts.state_key(self._window, self._template.text, self._identity())
        return {**key, "gpu_layers": self._gpu_layers}

    def _new_prompt_cache(self) -> PromptCache | None:
        """The prompt cache, for the first answer of a conversation or a batch."""
        store = self._prompt_store
        key = self._contexts.prompt_key(self._gpu_layers, self._identity())
        return PromptCache(store, key) if store is not None else None

    def _identity(self) -> str | None:
        """The projector's, whose work an image's cells are."""
        return self._projector.identity() if self._projector is not None else None

    def save_prompt_cache(self, keep_answer: bool = False) -> PromptWrite | None:
        """Write the first answer's prompt to the prompt cache, if it is worth an entry; the
        conversation's cells beyond that prompt go, or with ``keep_answer`` stay and are
        written too. Raises OSError where the disk refuses."""
        if self._prompt_cache is None:
            return None
        return self._prompt_cache.save(self.scheduler, keep_answer)

    def state_size(self) -> int:
        """Bytes ``export_state`` would return, without copying them."""
        return self.scheduler.state_size()

    def export_state(self) -> tuple[list[int], bytes]:
        """The evaluated tokens and llama.cpp's serialised KV cache for them."""
        return self.scheduler.export_state()

    def import_state(self, tokens: list[int], state: bytes) -> bool:
        """Restore a KV cache made by ``export_state``; on any failure start clean."""
        return self.scheduler.import_state(tokens, state)

    # -- images and audio (engine/projector.py) ---------------------------

    def media_facts(self) -> MediaFacts | None:
        return self._projector.facts() if self._projector is not None else None

    def prepare_media(self, item: MediaItem) -> float:
        if self._projector is None:
            raise UsageError(f"{item.name}: {MEDIA_HINT}")
        return self._projector.encode(item)

    def close(self) -> None:
        if self._projector is not None:
            self._projector.close()
            self._projector = None
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None
        if self._draft is not None:
            self._draft.close()
            self._draft = None
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None
            native.release_freed_memory()

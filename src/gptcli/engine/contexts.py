"""llama.cpp contexts of one loaded model: the window, the attention kernel, their parameters,
and what a state saved from them is valid for.

The window (``--ctx``, else the model's trained context up to 4,096) is what a
conversation may fill; the one-slot context starts smaller and doubles as it
fills (engine/scheduler.py), and a batch's context holds a stream per slot.
Every context of a model is made here, with the same threads, attention kernel
and KV cache type, so a cell's state written by one is read by another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcli.engine import native
from gptcli.engine.jobs import physical_memory
from gptcli.engine.kvcache import QUANTIZED, type_sizes
from gptcli.engine.slots import CONTEXT_STEP
from gptcli.errors import ModelError, UsageError

DEFAULT_CONTEXT = 4096
MAX_CONTEXT = 2**32 - CONTEXT_STEP  # llama.cpp's n_ctx is a uint32


def attention_kernel(lib: Any, kv_type: str, on_gpu: bool) -> int:
    """llama.cpp's flash-attention setting for a KV cache of ``kv_type``.

    Flash attention decodes ~28% slower on CPU at 1k context; GPU builds choose.
    llama.cpp keeps a quantized V cache only with it.
    """
    if kv_type in QUANTIZED:
        return int(lib.LLAMA_FLASH_ATTN_TYPE_ENABLED)
    if on_gpu:
        return int(lib.LLAMA_FLASH_ATTN_TYPE_AUTO)
    return int(lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)


def requested_window(ctx: int | None, trained: int | None) -> int:
    """The window asked for: ``--ctx``, else the trained context up to DEFAULT_CONTEXT."""
    return ctx or min(trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT)


def check_window(window: int, requested: int, trained: int | None, cell_bytes: int) -> list[str]:
    """Refuse a window whose KV cache no memory here could hold (the context grows into
    it, so it would fail mid-conversation); the notes llama.cpp would warn of instead."""
    needed = window * cell_bytes
    memory = physical_memory()
    if window > MAX_CONTEXT or (memory is not None and needed > memory):
        have = f"; this machine has {memory / 2**30:,.1f} GiB" if memory is not None else ""
        trained_note = f"; the model was trained on {trained:,}" if trained else ""
        raise UsageError(
            f"a {requested:,}-token context window needs {needed / 2**30:,.1f} GiB of KV "
            f"cache for this model{have} (try a smaller --ctx{trained_note})"
        )
    notes = []
    if window != requested:
        notes.append(
            f"the context window is {window:,} tokens, not {requested:,}: llama.cpp "
            f"allocates it in steps of {CONTEXT_STEP}"
        )
    if trained and window > trained:
        notes.append(
            f"the context window ({window:,} tokens) is larger than the model's "
            f"trained context ({trained:,}): past that, answers may lose coherence"
        )
    return notes


@dataclass(frozen=True)
class ContextMaker:
    """Makes contexts on one model, all with the same threads, kernel and KV cache type."""

    lib: Any
    model: Any
    path: Path
    threads: int
    flash: int
    kv_type: str

    @property
    def kv_type_id(self) -> int:
        return type_sizes(self.kv_type)[0]

    def params(self, cells: int, n_batch: int) -> Any:
        """llama.cpp's parameters for a context of ``cells`` cells (one sequence's)."""
        cparams = self.lib.llama_context_default_params()
        cparams.n_ctx = cells
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        cparams.flash_attn_type = self.flash
        cparams.type_k = cparams.type_v = self.kv_type_id
        return cparams

    def state_key(self, window: int, template: str, projector: str | None) -> dict[str, object]:
        """What a saved KV state of these contexts is only valid for (with the model
        file's sha256): a session snapshot's."""
        import hashlib

        key: dict[str, object] = {
            "n_ctx": window,
            "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
            "llama_cpp": native.engine_version(),
            "kv_type": self.kv_type,
        }
        if projector is not None:  # an image's cells are the projector's work
            key["projector"] = projector
        return key

    def prompt_key(self, gpu_layers: int, projector: str | None) -> dict[str, object]:
        """What a prompt-cache entry is only valid for (with the model file's sha256)."""
        key: dict[str, object] = {
            "llama_cpp": native.engine_version(),
            "kv_type": self.kv_type,
            "flash_attn": self.flash,
            "gpu_layers": gpu_layers,
        }
        if projector is not None:
            key["projector"] = projector
        return key

    def single(self, size: int, n_batch: int) -> Any:
        """A context of ``size`` cells for one sequence (the caller frees it)."""
        ctx = self.lib.llama_init_from_model(self.model, self.params(size, n_batch))
        if not ctx:
            raise ModelError(
                f"llama.cpp could not create a {size}-token context for {self.path} "
                "(out of memory? try a smaller --ctx)"
            )
        return ctx

    def parallel(self, sequences: int, cells_each: int, n_batch: int) -> Any:
        """A context for ``sequences`` independent sequences (the caller frees it).

        Each sequence gets a KV stream of its own of ``cells_each`` cells (kv_unified
        off): attention then runs over one sequence's cells only, which llama.h
        recommends for sequences that share no long prefix.
        """
        cparams = self.params(sequences * cells_each, n_batch)
        cparams.n_seq_max = sequences
        cparams.kv_unified = False
        ctx = self.lib.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise ModelError(
                f"llama.cpp could not create a context of {sequences} x {cells_each} tokens "
                f"for {self.path} (out of memory? try a smaller --parallel or --ctx)"
            )
        return ctx

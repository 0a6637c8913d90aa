"""The KV cache's element types and what one token's cells take in each.

llama.cpp keeps, for every layer, one row of K and one row of V per token: the
key-value heads times the head's size, in the cache's type (``--kv-type``). A
quantized type stores blocks of 32 elements in fewer bytes (q8_0: 34 bytes, q4_0:
18, against 64 in f16); the sizes are ggml's own (``native.ggml_types``), so what
is computed here is what the linked library allocates. A quantized V cache needs
flash attention in llama.cpp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KV_TYPES = ("f16", "q8_0", "q4_0", "f32")
DEFAULT_KV_TYPE = "f16"
QUANTIZED = frozenset({"q8_0", "q4_0"})


@dataclass(frozen=True)
class KvShape:
    """What one token's cells hold: per layer, the K and V heads and each head's size."""

    kv_heads: tuple[int, ...]  # one entry per layer
    head_k: int
    head_v: int


def shape_of(metadata: Mapping[str, Any]) -> KvShape | None:
    """The cache's shape from a GGUF file's metadata; None where the file does not say."""
    arch = metadata.get("general.architecture")
    layers = metadata.get(f"{arch}.block_count")
    heads = metadata.get(f"{arch}.attention.head_count")
    embedding = metadata.get(f"{arch}.embedding_length")
    if not isinstance(layers, int) or layers <= 0:
        return None
    per_layer = metadata.get(f"{arch}.attention.head_count_kv", heads)
    if isinstance(per_layer, int):
        per_layer = [per_layer] * layers
    if isinstance(heads, list):  # per-layer counts: the head's size comes from the widest
        heads = max(heads, default=0)
    if not isinstance(per_layer, list) or not all(isinstance(h, int) for h in per_layer):
        return None
    default_head = embedding // heads if isinstance(embedding, int) and heads else 0
    head_k = metadata.get(f"{arch}.attention.key_length", default_head)
    head_v = metadata.get(f"{arch}.attention.value_length", head_k)
    if not isinstance(head_k, int) or not isinstance(head_v, int) or head_k <= 0:
        return None
    return KvShape(tuple(per_layer[:layers]), head_k, head_v)


def model_shape(lib: Any, model: Any) -> KvShape:
    """The cache's shape from a loaded model's own counts (for a file that does not say)."""
    heads = max(1, lib.llama_model_n_head(model))
    head_dim = lib.llama_model_n_embd(model) // heads
    kv_heads = (lib.llama_model_n_head_kv(model),) * lib.llama_model_n_layer(model)
    return KvShape(kv_heads, head_dim, head_dim)


def type_sizes(kv_type: str) -> tuple[int, int, int]:
    """(ggml type id, elements per block, bytes per block) of a cache type."""
    from gptcli.engine import native

    for type_id, (name, block, size) in native.ggml_types().items():
        if name.lower() == kv_type:
            return type_id, block, size
    raise ValueError(f"the linked ggml has no type {kv_type}")


def cell_bytes(shape: KvShape, kv_type: str) -> int:
    """Bytes of K and V one token takes in one sequence's cache of ``kv_type``."""
    _, block, size = type_sizes(kv_type)
    total = 0
    for heads in shape.kv_heads:
        total += -(-heads * shape.head_k // block) * size
        total += -(-heads * shape.head_v // block) * size
    return total


def human_bytes(count: float) -> str:
    """1,536 -> "1.5 KiB": the sizes a person reads in /show, doctor and models info."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} GiB"


@dataclass(frozen=True)
class KvFit:
    """What one cache type costs a model: bytes per token, and the largest window that fits."""

    kv_type: str
    bytes_per_token: int
    largest_window: int | None  # None: the machine's memory is unknown


def kv_fit(shape: KvShape, model_bytes: int, memory: int | None) -> list[KvFit]:
    """For each cache type: one token's bytes, and the largest window (a multiple of 256
    tokens, below llama.cpp's 2**32) whose cache fits in ``memory`` beside the weights."""
    fits = []
    for kv_type in KV_TYPES:
        per_token = cell_bytes(shape, kv_type)
        largest = None
        if memory is not None:
            largest = min(max(0, memory - model_bytes) // per_token, 2**32 - 1) // 256 * 256
        fits.append(KvFit(kv_type, per_token, largest))
    return fits

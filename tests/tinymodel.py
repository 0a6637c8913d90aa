"""A tiny llama-architecture GGUF that llama.cpp loads and runs: a model of another
vocabulary than the bundled one (random weights, a byte-level BPE of a few hundred tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBED = 32
FEED_FORWARD = 64
HEADS = 2


def byte_tokens() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, as byte-level BPE vocabularies list them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


def write_tiny_llama(path: Path, last_token: str = "Ġthe") -> Path:
    """The model at ``path``; a ``last_token`` other than the default makes a vocabulary
    that differs from the default one in that token's text alone."""
    import gguf
    import numpy as np

    tokens = ["<|endoftext|>", "<|begin|>", *byte_tokens(), "Ġt", "he", last_token]
    vocab = len(tokens)
    rng = np.random.default_rng(7)

    def weights(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test llama")
    writer.add_context_length(256)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(1)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, *([1] * (vocab - 2))])
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(0)
    writer.add_tensor("token_embd.weight", weights(vocab, EMBED))
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", weights(vocab, EMBED))
    blk = "blk.0."
    writer.add_tensor(blk + "attn_norm.weight", np.ones(EMBED, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"{blk}{name}.weight", weights(EMBED, EMBED))
    writer.add_tensor(blk + "ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor(blk + "ffn_gate.weight", weights(FEED_FORWARD, EMBED))
    writer.add_tensor(blk + "ffn_up.weight", weights(FEED_FORWARD, EMBED))
    writer.add_tensor(blk + "ffn_down.weight", weights(EMBED, FEED_FORWARD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

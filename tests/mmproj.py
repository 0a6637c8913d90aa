"""A tiny random-weight projector GGUF for the bundled model: LLaVA-1.5 style (``mlp``).

It proves the multimodal pipeline (encode, positions, KV), not quality; the keys,
shapes and pitfalls are those that this llama.cpp's clip.cpp checks (see
tools/mtmd/clip.cpp in llama-cpp-python's vendored tree).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectorShape:
    """The encoder's sizes; ``width`` must be the text model's embedding width."""

    image_size: int = 64
    patch_size: int = 16
    hidden: int = 64
    ff: int = 256  # != hidden, or a legacy check swaps ffn_up and ffn_down
    blocks: int = 2  # llava runs blocks 0..n-2: with one block none runs
    heads: int = 4
    mm_hidden: int = 128
    width: int = 576  # SmolLM2-135M
    scale: float = 0.2  # the rms the image embeddings land near (the text's are ~0.14)

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def write_projector(path: Path, shape: ProjectorShape = ProjectorShape(), seed: int = 0) -> Path:
    """Write a projector with seeded random weights to ``path``."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    h, f, m, d = shape.hidden, shape.ff, shape.mm_hidden, shape.width

    def matrix(rows: int, cols: int, std: float | None = None) -> np.ndarray:
        std = (1.0 / np.sqrt(cols)) if std is None else std
        return (rng.standard_normal((rows, cols)) * std).astype(np.float16)

    def vector(n: int, value: float | None = None) -> np.ndarray:
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return (rng.standard_normal(n) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("gptcli test projector")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    for key, value in (
        ("image_size", shape.image_size),
        ("patch_size", shape.patch_size),
        ("embedding_length", h),
        ("feed_forward_length", f),
        ("block_count", shape.blocks),
        ("projection_dim", d),
        ("attention.head_count", shape.heads),
    ):
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    p = shape.patch_size
    patch = rng.standard_normal((h, 3, p, p)) / np.sqrt(3 * p * p)
    writer.add_tensor("v.patch_embd.weight", patch.astype(np.float16))
    writer.add_tensor("v.position_embd.weight", matrix(shape.patches, h, 0.02))
    writer.add_tensor("v.pre_ln.weight", vector(h, 1.0))
    writer.add_tensor("v.pre_ln.bias", vector(h, 0.0))
    for i in range(shape.blocks):
        block = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{block}.{name}.weight", matrix(h, h))
            writer.add_tensor(f"{block}.{name}.bias", vector(h))
        for name in ("ln1", "ln2"):
            writer.add_tensor(f"{block}.{name}.weight", vector(h, 1.0))
            writer.add_tensor(f"{block}.{name}.bias", vector(h, 0.0))
        writer.add_tensor(f"{block}.ffn_up.weight", matrix(f, h))
        writer.add_tensor(f"{block}.ffn_up.bias", vector(f))
        writer.add_tensor(f"{block}.ffn_down.weight", matrix(h, f))
        writer.add_tensor(f"{block}.ffn_down.bias", vector(h))
    writer.add_tensor("mm.0.weight", matrix(m, h))
    writer.add_tensor("mm.0.bias", vector(m))
    # After the gelu the hidden units' rms is about 0.5: scale the last layer to land
    # the embeddings near ``scale``.
    writer.add_tensor("mm.2.weight", matrix(d, m, shape.scale / np.sqrt(m)))
    writer.add_tensor("mm.2.bias", vector(d, 0.0))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@dataclass(frozen=True)
class AudioShape:
    """A whisper-style audio encoder's sizes (Qwen2-Audio's ``qwen2a``): a conv1d front end
    over ``mel_bins`` mel filters (computed by mtmd, not stored), ``blocks`` transformer
    blocks over at most ``positions`` frames (a 30 s window is 1,500 after the convs),
    then one linear layer to the text model's ``width``."""

    mel_bins: int = 80
    hidden: int = 64
    ff: int = 256
    blocks: int = 2
    heads: int = 4
    positions: int = 1500
    width: int = 576  # SmolLM2-135M
    scale: float = 0.2


def write_audio_projector(path: Path, shape: AudioShape = AudioShape(), seed: int = 0) -> Path:
    """Write an audio projector (``qwen2a``) with seeded random weights to ``path``."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    h, f, d = shape.hidden, shape.ff, shape.width

    def matrix(*dims: int, std: float | None = None) -> np.ndarray:
        std = (
            (1.0 / np.sqrt(dims[-1] * (dims[-2] if len(dims) == 3 else 1))) if std is None else std
        )
        return (rng.standard_normal(dims) * std).astype(np.float16)

    def vector(n: int, value: float | None = None) -> np.ndarray:
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return (rng.standard_normal(n) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("gptcli test audio projector")
    writer.add_bool("clip.has_vision_encoder", False)
    writer.add_bool("clip.has_audio_encoder", True)
    writer.add_string("clip.projector_type", "qwen2a")
    for key, value in (
        ("num_mel_bins", shape.mel_bins),
        ("embedding_length", h),
        ("feed_forward_length", f),
        ("block_count", shape.blocks),
        ("projection_dim", d),
        ("attention.head_count", shape.heads),
    ):
        writer.add_uint32(f"clip.audio.{key}", value)
    writer.add_float32("clip.audio.attention.layer_norm_epsilon", 1e-5)
    # conv1d kernels are (out, in, width) here, [width, in, out] in ggml; biases [1, out]
    writer.add_tensor("a.conv1d.1.weight", matrix(h, shape.mel_bins, 3))
    writer.add_tensor("a.conv1d.1.bias", vector(h).reshape(h, 1))
    writer.add_tensor("a.conv1d.2.weight", matrix(h, h, 3))
    writer.add_tensor("a.conv1d.2.bias", vector(h).reshape(h, 1))
    # F32: the encoder adds it to F32 activations, and ggml's CPU add of an F16 aborts
    positions = matrix(shape.positions, h, std=0.02).astype(np.float32)
    writer.add_tensor("a.position_embd.weight", positions)
    for i in range(shape.blocks):
        block = f"a.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{block}.{name}.weight", matrix(h, h))
            if name != "attn_k":  # whisper's key projection has no bias
                writer.add_tensor(f"{block}.{name}.bias", vector(h))
        for name in ("ln1", "ln2"):
            writer.add_tensor(f"{block}.{name}.weight", vector(h, 1.0))
            writer.add_tensor(f"{block}.{name}.bias", vector(h, 0.0))
        writer.add_tensor(f"{block}.ffn_up.weight", matrix(f, h))
        writer.add_tensor(f"{block}.ffn_up.bias", vector(f))
        writer.add_tensor(f"{block}.ffn_down.weight", matrix(h, f))
        writer.add_tensor(f"{block}.ffn_down.bias", vector(h))
    writer.add_tensor("a.post_ln.weight", vector(h, 1.0))
    writer.add_tensor("a.post_ln.bias", vector(h, 0.0))
    # After the post-norm the features' rms is about 1: land the embeddings near ``scale``.
    writer.add_tensor("mm.a.fc.weight", matrix(d, h, std=shape.scale / np.sqrt(h)))
    writer.add_tensor("mm.a.fc.bias", vector(d, 0.0))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

"""Reading and validating GGUF model files without loading weights.

Model files come from the internet and llama.cpp's own parser has had memory
bugs on crafted headers, so every count, length, dimension and offset is checked
against the bytes that are really there before native code sees the file. All
reads are bounded; the only exception that escapes is :class:`ModelError`.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcli.engine.native import ggml_types
from gptcli.errors import ModelError

GGUF_MAGIC = b"GGUF"
MAX_STRING = 64 * 1024 * 1024
MAX_KEY = 64 * 1024
MAX_TEMPLATE = 256 * 1024
MAX_DIMS = 4
KEEP_ARRAY_ITEMS = 16  # larger arrays are summarised, not kept

# general.file_type -> the quantisation name people use
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

# GGUF value type id -> struct format of fixed-size scalars
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array too long to keep: its element type and length."""

    item_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str
    offset: int
    nbytes: int


@dataclass(frozen=True)
class ModelFileInfo:
    """What a validated GGUF file says about itself."""

    path: Path
    size: int
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(repr=False)
    types: dict[str, int] = field(default_factory=dict, repr=False)  # key -> GGUF value type

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        """The file's name without .gguf: what users recognise and type."""
        return self.path.name.removesuffix(".gguf")

    @property
    def title(self) -> str:
        return str(self.metadata.get("general.name") or self.name)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        return "unknown"

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def parameter_count(self) -> int:
        total = 0
        for tensor in self.tensors:
            count = 1
            for dim in tensor.shape:
                count *= dim
            total += count
        return total


_U64 = struct.Struct("<Q")


class _Reader:
    """Bounded little-endian reads over a memory map; every overrun is a ModelError."""

    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def fail(self, problem: str) -> ModelError:
        return ModelError(f"{self.path}: not a usable GGUF file: {problem}")

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if size > self.remaining():
            raise self.fail(f"truncated at byte {self.pos} (file is {len(self.buf)} bytes)")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self, limit: int, what: str) -> str:
        length = self.take("<Q")
        if length > limit:
            raise self.fail(f"{what} at byte {self.pos - 8} claims {length} bytes")
        if length > self.remaining():
            raise self.fail(f"{what} at byte {self.pos - 8} runs past the end of the file")
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, key: str) -> None:
        """Step over ``count`` length-prefixed strings (a vocabulary: tens of thousands)."""
        buf, pos, end, unpack = self.buf, self.pos, len(self.buf), _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise self.fail(f"array {key!r} runs past the end of the file")
            pos += 8 + unpack(buf, pos)[0]
        if pos > end:
            raise self.fail(f"array {key!r} runs past the end of the file")
        self.pos = pos

    def value(self, type_id: int, key: str, depth: int = 0) -> Any:
        if type_id in _SCALARS:
            return self.take(_SCALARS[type_id])
        if type_id == _STRING:
            return self.string(MAX_STRING, f"value of {key!r}")
        if type_id == _ARRAY and depth == 0:
            item_type = self.take("<I")
            length = self.take("<Q")
            item_size = struct.calcsize(_SCALARS[item_type]) if item_type in _SCALARS else 8
            if item_type not in _SCALARS and item_type != _STRING:
                raise self.fail(f"array {key!r} has unsupported item type {item_type}")
            if length * item_size > self.remaining():
                raise self.fail(f"array {key!r} claims {length} items, more than the file holds")
            if length > KEEP_ARRAY_ITEMS:
                if item_type in _SCALARS:
                    self.pos += length * item_size
                else:
                    self.skip_strings(length, key)
                return ArraySummary(item_type, length)
            items = [self.value(item_type, key, depth + 1) for _ in range(length)]
            return items if length <= KEEP_ARRAY_ITEMS else ArraySummary(item_type, length)
        raise self.fail(f"metadata {key!r} has unknown value type {type_id}")


def _check_path(path: Path) -> int:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot access model file {path}: {exc.strerror}") from None
    if path.is_dir():
        raise ModelError(f"{path} is a directory, not a GGUF model file")
    if stat.st_size == 0:
        raise ModelError(f"{path} is empty (0 bytes), not a GGUF model file")
    return stat.st_size


def read_model_file(path: Path) -> ModelFileInfo:
    """Validate ``path`` as a GGUF file and return its metadata and tensor table."""
    size = _check_path(path)
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf,
        ):
            return _parse(_Reader(buf, path), size)
    except PermissionError:
        raise ModelError(f"cannot read model file {path}: permission denied") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None


def _parse(reader: _Reader, size: int) -> ModelFileInfo:
    path = reader.path
    magic = bytes(reader.buf[:4])
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF model file (it starts with {magic!r})")
    reader.pos = 4
    version = reader.take("<I")
    if version not in (2, 3):
        raise reader.fail(f"unsupported GGUF version {version}")
    tensor_count = reader.take("<Q")
    kv_count = reader.take("<Q")
    if kv_count * 13 > reader.remaining():
        raise reader.fail(f"header claims {kv_count} metadata entries, more than the file holds")
    if tensor_count * 24 > reader.remaining():
        raise reader.fail(f"header claims {tensor_count} tensors, more than the file holds")
    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    for _ in range(kv_count):
        key = reader.string(MAX_KEY, "metadata key")
        types[key] = reader.take("<I")
        metadata[key] = reader.value(types[key], key)
    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and len(template) > MAX_TEMPLATE:
        raise reader.fail(f"chat template is {len(template)} bytes (limit {MAX_TEMPLATE})")
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise reader.fail(f"general.alignment {alignment!r} is not a power of two")
    infos = [_tensor_entry(reader) for _ in range(tensor_count)]
    tensors = _tensor_layout(reader, infos, alignment, size)
    return ModelFileInfo(path, size, version, metadata, tensors, types)


def _tensor_layout(
    reader: _Reader, infos: list[tuple[str, tuple[int, ...], int, int]], alignment: int, size: int
) -> list[TensorInfo]:
    """Each tensor's bytes, checked to be whole blocks, aligned and inside the file."""
    data_start = -(-reader.pos // alignment) * alignment
    types = ggml_types()
    tensors: list[TensorInfo] = []
    for name, shape, type_id, offset in infos:
        type_name, block, block_bytes = types[type_id]
        count = 1
        for dim in shape:
            count *= dim
        if shape[0] % block:
            raise reader.fail(f"tensor {name!r}: row of {shape[0]} is not a multiple of {block}")
        nbytes = count // block * block_bytes
        if offset % alignment:
            raise reader.fail(f"tensor {name!r}: offset {offset} is not aligned to {alignment}")
        end = data_start + offset + nbytes
        if end > size:
            raise ModelError(
                f"{reader.path} is truncated or corrupt: tensor {name!r} ends at byte {end}, "
                f"the file has {size} bytes"
            )
        tensors.append(TensorInfo(name, shape, type_name, offset, nbytes))
    return tensors


def _tensor_entry(reader: _Reader) -> tuple[str, tuple[int, ...], int, int]:
    name = reader.string(MAX_KEY, "tensor name")
    n_dims = reader.take("<I")
    if not 1 <= n_dims <= MAX_DIMS:
        raise reader.fail(f"tensor {name!r} has {n_dims} dimensions")
    shape = tuple(reader.take("<Q") for _ in range(n_dims))
    count = 1
    for dim in shape:
        if dim == 0 or dim >= 2**40:
            raise reader.fail(f"tensor {name!r} has dimension {dim}")
        count *= dim
        if count >= 2**48:
            raise reader.fail(f"tensor {name!r} claims {count} elements or more")
    type_id = reader.take("<I")
    if type_id not in ggml_types():
        raise reader.fail(f"tensor {name!r} has unknown type {type_id}")
    offset = reader.take("<Q")
    return name, shape, type_id, offset

"""A multimodal projector loaded beside the text model (libmtmd): images and audio as embeddings.

An image or a sound becomes a run of prompt positions whose inputs are embeddings
instead of tokens. In the token lists the engine keeps (a request's prompt, a slot's
cells, a KV snapshot) each such position holds a stand-in: a negative number made
from the media's sha256 and the position's offset in it, so prefix reuse keeps an
image's cells only for the same image, and a snapshot resumes a turn that holds one.
The scheduler decodes a run of stand-ins with the embeddings :meth:`Projector.fill`
puts in an embeddings batch; decoding stays the scheduler's.

The projector file is untrusted input, as a model file is: its header is validated
in Python first (:func:`check_projector`), since clip.cpp aborts the process on a
key of the wrong type, and its width is checked against the text model's.
"""

from __future__ import annotations

import ctypes
import io
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcli.engine import native
from gptcli.engine.base import MediaFacts
from gptcli.engine.modelfile import ModelFileInfo, read_model_file
from gptcli.errors import GptcliError, UsageError
from gptcli.media import MediaItem, registered, split_media

STAND_IN_SPAN = 2**20  # positions one image or sound may take
MAX_PIXELS = 50_000_000  # an image is decoded only below this (its header says how big)
# The most recent images and sounds are kept tokenized and encoded, up to this many bytes of
# embeddings (a PDF's pages are all encoded when attached, and again only past it).
KEPT_BYTES = 512 * 2**20
_BOOL, _I32, _U32, _F32, _STRING, _ARRAY = 7, 5, 4, 6, 8, 9
# The type clip.cpp reads each key of the projector with (anything else under clip.* is
# read as a uint32); a key of another type aborts the process there.
_KEY_TYPES = {
    "has_vision_encoder": _BOOL,
    "has_audio_encoder": _BOOL,
    "has_gen_audio_encoder": _BOOL,
    "use_gelu": _BOOL,
    "use_silu": _BOOL,
    "projector_type": _STRING,
    "mm_patch_merge_type": _STRING,
    "model_variant": _STRING,
    "minicpmv_version": _I32,
    "layer_norm_epsilon": _F32,
    "swiglu_clamp": _F32,
}
# Where a projector type's output width is (tensor, dimension), for the common types;
# clip.cpp checks the others itself and refuses the file.
_WIDTH = {
    "mlp": ("mm.2.weight", 1),
    "phi4": ("mm.2.weight", 1),
    "pixtral": ("mm.2.weight", 1),
    "ultravox": ("mm.2.weight", 1),
    "voxtral": ("mm.2.weight", 1),
    "qwen2a": ("mm.a.fc.weight", 1),
    "lfm2": ("mm.2.weight", 1),
    "kimivl": ("mm.2.weight", 1),
    "gemma3": ("mm.input_projection.weight", 0),
    "idefics3": ("mm.model.fc.weight", 1),
    "internvl": ("mm.3.weight", 1),
}


class ProjectorError(UsageError):
    """A projector file that cannot serve this model (exit 2)."""


def check_projector(path: Path, width: int | None) -> ModelFileInfo:
    """Validate ``path`` as a projector for a text model of ``width``; its header."""
    info = read_model_file(path)  # ModelError for a file that is no usable GGUF
    if info.architecture != "clip":
        raise ProjectorError(
            f"{path} is not a multimodal projector (its architecture is {info.architecture!r}, "
            "not 'clip')"
        )
    for key, type_id in info.types.items():
        if not key.startswith("clip.") or type_id == _ARRAY:
            continue
        wanted = _KEY_TYPES.get(key.rsplit(".", 1)[-1], _U32)
        if type_id != wanted:
            raise ProjectorError(
                f"{path}: projector key {key!r} has GGUF type {type_id}, not {wanted}"
            )
    kinds = [str(info.metadata.get(k, "")) for k in _type_keys(info)]
    tensors = {t.name: t.shape for t in info.tensors}
    for kind in kinds:
        tensor, dim = _WIDTH.get(kind, ("", 0))
        shape = tensors.get(tensor)
        if width and shape is not None and len(shape) > dim and shape[dim] != width:
            raise ProjectorError(
                f"{path} projects to a width of {shape[dim]}, but the model's embeddings are "
                f"{width} wide: it is a projector for another model"
            )
    return info


def _type_keys(info: ModelFileInfo) -> list[str]:
    keys = ["clip.projector_type", "clip.vision.projector_type", "clip.audio.projector_type"]
    return [k for k in keys if k in info.metadata]


@dataclass(eq=False)
class _Piece:
    """One media chunk of an item (an image, or one slice of it): its embeddings to be."""

    chunk: Any  # an owned mtmd_input_chunk
    offset: int  # its first position's offset in the item
    count: int
    non_causal: bool
    embeddings: Any = None  # count x width floats, once encoded


@dataclass(eq=False)
class _Tokenized:
    """An item as the model takes it: text tokens around its media pieces."""

    item: MediaItem
    base: int  # the stand-in of offset 0; offset i is base - i
    tokens: list[int]
    pieces: list[_Piece] = field(default_factory=list)
    seconds: float | None = None  # how long encoding took, once it has


def stand_in_base(digest: str) -> int:
    """The stand-in of an item's first position: negative, the run fitting an int32."""
    return -(STAND_IN_SPAN + int(digest[:15], 16) % (2**31 - 2 * STAND_IN_SPAN))


class Projector:
    """libmtmd's context for one text model: tokenizes and encodes images and audio."""

    def __init__(self, path: Path, lib: Any, model: Any, threads: int, gpu: bool, debug: bool):
        self._lib = lib
        self.width = int(lib.llama_model_n_embd_inp(model))
        self.info = check_projector(path, self.width)
        self.path = path
        mtmd = self._mtmd = native.mtmd_bindings(debug)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = gpu
        params.n_threads = threads
        params.print_timings = False
        params.warmup = False
        with native.quiet_stderr():
            self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self._ctx:
            raise ProjectorError(
                f"llama.cpp could not load the projector {path} for this model (run with "
                "--debug for details)"
            )
        if mtmd.mtmd_decode_use_mrope(self._ctx):
            self.close()
            raise ProjectorError(
                f"{path} places images with M-RoPE positions (the Qwen2-VL family), which "
                "gptcli does not support yet"
            )
        self.vision = bool(mtmd.mtmd_support_vision(self._ctx))
        self.audio = bool(mtmd.mtmd_support_audio(self._ctx))
        self._marker = bytes(mtmd.mtmd_get_marker(self._ctx) or mtmd.mtmd_default_marker())
        self._items: OrderedDict[str, _Tokenized] = OrderedDict()
        self._bases: dict[int, str] = {}  # stand-in base -> sha256, for every item seen
        self._image_tokens: int | None = None
        self._batch: Any = None
        self._batch_size = 0

    def takes(self, item: MediaItem) -> bool:
        return self.vision if item.kind == "image" else self.audio

    def facts(self) -> MediaFacts:
        size = self.image_size() if self.vision else None
        return MediaFacts(self.vision, self.audio, self.image_tokens(), str(self.path), size)

    def image_size(self) -> int:
        """The side of the images the encoder works at (clip.vision.image_size)."""
        side = self.info.metadata.get("clip.vision.image_size")
        return side if isinstance(side, int) and 0 < side <= 4096 else 336

    def image_tokens(self) -> int | None:
        """The tokens of an image of the encoder's own size (others are resized to it or,
        with models that tile, may take more)."""
        if self._image_tokens is None and self.vision:
            from PIL import Image

            side = self.image_size()
            png = io.BytesIO()
            Image.new("RGB", (side, side), (128, 128, 128)).save(png, "PNG")
            item = MediaItem("image", "png", "probe", png.getvalue())
            self._image_tokens = sum(p.count for p in self._tokenized(item).pieces)
        return self._image_tokens

    # -- tokens ------------------------------------------------------------

    def tokens(self, item: MediaItem) -> list[int]:
        """``item``'s tokens: text tokens around stand-ins for its media positions."""
        return self._tokenized(item).tokens

    def encode(self, item: MediaItem) -> float:
        """Encode ``item`` now (once); how long that took."""
        done = self._tokenized(item)
        if done.seconds is None:
            start = time.perf_counter()
            for piece in done.pieces:
                self._encode(piece)
            done.seconds = time.perf_counter() - start
        return done.seconds

    def _tokenized(self, item: MediaItem) -> _Tokenized:
        digest = item.sha256
        done = self._items.get(digest)
        if done is not None:
            self._items.move_to_end(digest)
            return done
        done = self._tokenize(item)
        self._items[digest] = done
        self._bases[done.base] = digest
        kept = sum(self._bytes(each) for each in self._items.values())
        while len(self._items) > 1 and kept > KEPT_BYTES:
            _, old = self._items.popitem(last=False)
            kept -= self._bytes(old)
            self._free(old)
        return done

    def _bytes(self, done: _Tokenized) -> int:
        """What an item's embeddings take (or will, once encoded)."""
        return sum(piece.count for piece in done.pieces) * self.width * 4

    def _tokenize(self, item: MediaItem) -> _Tokenized:
        mtmd = self._mtmd
        if not (self.vision if item.kind == "image" else self.audio):
            what = "images" if item.kind == "image" else "audio"
            raise ProjectorError(f"{item.name}: this model's projector takes no {what}")
        bitmap = self._bitmap(item)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text()
            text.text, text.text_len = self._marker, len(self._marker)
            text.add_special, text.parse_special = False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            with native.quiet_stderr():
                status = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if status != 0:
                raise GptcliError(f"{item.name}: llama.cpp could not read it (code {status})")
            return self._collect(item, chunks)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def _collect(self, item: MediaItem, chunks: Any) -> _Tokenized:
        mtmd = self._mtmd
        done = _Tokenized(item, stand_in_base(item.sha256), [])
        offset = 0
        for index in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, index)
            count = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                size = ctypes.c_size_t()
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(size))
                done.tokens.extend(tokens[i] for i in range(size.value))
                continue
            if offset + count >= STAND_IN_SPAN:
                self._free(done)
                raise GptcliError(f"{item.name} takes {offset + count:,} positions, too many")
            non_causal = bool(mtmd.mtmd_decode_use_non_causal(self._ctx, chunk))
            piece = _Piece(mtmd.mtmd_input_chunk_copy(chunk), offset, count, non_causal)
            done.pieces.append(piece)
            done.tokens.extend(range(done.base - offset, done.base - offset - count, -1))
            offset += count
        return done

    def _bitmap(self, item: MediaItem) -> Any:
        mtmd = self._mtmd
        if item.kind == "audio":
            buf = (ctypes.c_uint8 * len(item.data)).from_buffer_copy(item.data)
            with native.quiet_stderr():
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buf, len(buf), False)
        else:
            width, height, rgb = decode_image(item)
            data = (ctypes.c_ubyte * len(rgb)).from_buffer_copy(rgb)
            bitmap = mtmd.mtmd_bitmap_init(width, height, data)
        if not bitmap:
            raise GptcliError(f"{item.name}: llama.cpp could not decode this {item.format} file")
        mtmd.mtmd_bitmap_set_id(bitmap, item.sha256.encode())
        return bitmap

    def _encode(self, piece: _Piece) -> None:
        if piece.embeddings is not None:
            return
        mtmd = self._mtmd
        with native.quiet_stderr():
            status = mtmd.mtmd_encode_chunk(self._ctx, piece.chunk)
        if status != 0:
            raise GptcliError(f"llama.cpp could not encode an image or sound (code {status})")
        size = piece.count * self.width
        embeddings = (ctypes.c_float * size)()
        ctypes.memmove(embeddings, mtmd.mtmd_get_output_embd(self._ctx), size * 4)
        piece.embeddings = embeddings
        # The preprocessed image (often larger than its embeddings) is not needed again.
        mtmd.mtmd_input_chunk_free(piece.chunk)
        piece.chunk = None

    # -- decoding (engine/scheduler.py) --------------------------------------

    def find(self, token: int) -> tuple[_Tokenized, _Piece, int]:
        """The item, piece and row within it that stand-in ``token`` stands for."""
        for base, digest in self._bases.items():
            if base - STAND_IN_SPAN < token <= base:
                item = registered(digest)
                if item is None:
                    break
                done = self._tokenized(item)
                offset = base - token
                for piece in done.pieces:
                    if piece.offset <= offset < piece.offset + piece.count:
                        return done, piece, offset - piece.offset
                break
        raise GptcliError("the prompt holds an image or sound this process no longer has")

    def fill(
        self, prompt: list[int], start: int, limit: int, seq: int, pos: int
    ) -> tuple[Any, bool]:
        """An embeddings batch for the run of stand-ins at ``prompt[start:]`` (one piece's,
        at most ``limit``), at positions from ``pos``; its ``n_tokens`` says how many."""
        _, piece, row = self.find(prompt[start])
        self._encode(piece)
        count = min(limit, piece.count - row)
        expected = prompt[start]
        for index in range(count):  # the run ends where the prompt's stand-ins do
            if start + index >= len(prompt) or prompt[start + index] != expected - index:
                count = index
                break
        batch = self._embedding_batch(limit)
        width = self.width
        ctypes.memmove(
            batch.embd,
            ctypes.byref(piece.embeddings, row * width * 4),
            count * width * 4,
        )
        for index in range(count):
            batch.pos[index] = pos + index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq
            batch.logits[index] = False
        batch.n_tokens = count
        return batch, piece.non_causal

    def _embedding_batch(self, size: int) -> Any:
        if self._batch is None or self._batch_size < size:
            if self._batch is not None:
                self._lib.llama_batch_free(self._batch)
            self._batch = self._lib.llama_batch_init(size, self.width, 1)
            self._batch_size = size
        return self._batch

    def identity(self) -> str:
        """What a KV snapshot with images is only valid for: this projector file."""
        stat = self.path.stat()
        return f"{self.path.name}:{stat.st_size}:{stat.st_mtime_ns}"

    def seconds(self, item: MediaItem) -> float | None:
        done = self._items.get(item.sha256)
        return done.seconds if done is not None else None

    def _free(self, done: _Tokenized) -> None:
        for piece in done.pieces:
            if piece.chunk:
                self._mtmd.mtmd_input_chunk_free(piece.chunk)
                piece.chunk = None
        done.pieces = []

    def close(self) -> None:
        for done in self._items.values():
            self._free(done)
        self._items.clear()
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None


def media_parts(projector: Projector | None, text: str, special: bool) -> list[str | list[int]]:
    """A piece of prompt text as its stretches of text and the tokens of the media it
    names (a template's own markup never names any). Media this model does not take (an
    earlier turn's image, after a switch to a model without a projector) become a note
    in the text: a new attachment was refused before it got here (answering/attaching.py)."""
    if special:
        return [text]
    parts = split_media(text)
    if len(parts) == 1 and isinstance(parts[0], str):
        return [parts[0]]
    found: list[str | list[int]] = []
    for part in parts:
        if isinstance(part, str):
            found.append(part)
        elif projector is None or not projector.takes(part):
            found.append(f"({part.kind} {part.name}: not shown, this model does not take it)")
        else:
            found.append(projector.tokens(part))
    return found


def decode_image(item: MediaItem) -> tuple[int, int, bytes]:
    """``item``'s first frame as RGB: (width, height, bytes); a header that claims more
    than MAX_PIXELS is refused before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(item.data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UsageError(
                    f"{item.name} claims {width:,} x {height:,} pixels, over the cap of "
                    f"{MAX_PIXELS:,}"
                )
            image.seek(0)  # a GIF's or WebP's first frame
            return width, height, image.convert("RGB").tobytes()
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{item.name}: cannot decode this {item.format} image ({exc})") from None

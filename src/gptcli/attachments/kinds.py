"""A file's kind from its first bytes: text, PDF, an image or audio format, or binary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "pdf", "image", "audio", "binary"]
SNIFF_BYTES = 8192  # what is read to decide


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say: the kind and, for media and binaries, the format's name
    (for text, the codec its byte-order mark names; empty for UTF-8)."""

    kind: Kind
    format: str = ""


def _bmp(head: bytes) -> bool:
    # "BM" alone starts many texts: the header's reserved words are zero and its
    # info header has one of the sizes the format defines.
    if len(head) < 18 or not head.startswith(b"BM") or head[6:10] != b"\0\0\0\0":
        return False
    return int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)


def _mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # An MPEG audio frame: 11 sync bits, a layer that is not "reserved".
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and head[1] & 0x06 != 0


# (prefix, what follows at 8..12 or None, kind, format), checked in order.
_MAGIC: tuple[tuple[bytes, bytes | None, Kind, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", None, "image", "png"),
    (b"\xff\xd8\xff", None, "image", "jpeg"),
    (b"GIF87a", None, "image", "gif"),
    (b"GIF89a", None, "image", "gif"),
    (b"RIFF", b"WEBP", "image", "webp"),
    (b"RIFF", b"WAVE", "audio", "wav"),
    (b"fLaC", None, "audio", "flac"),
)


# Byte-order marks of Unicode text that is not UTF-8, checked in order (UTF-32 LE's mark
# starts with UTF-16 LE's). Python's codecs of these names read the mark and drop it.
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def bom_encoding(head: bytes) -> str | None:
    """The codec of text that starts with a UTF-16 or UTF-32 byte-order mark, else None."""
    return next((codec for mark, codec in _BOMS if head.startswith(mark)), None)


def sniff(head: bytes) -> Sniffed:
    """The kind of data that starts with ``head`` (its first SNIFF_BYTES or all of it)."""
    # Before the magic numbers: UTF-16 LE's mark (FF FE) is also an MPEG audio frame's sync.
    if codec := bom_encoding(head):
        return Sniffed("text", codec)
    for prefix, at_eight, kind, name in _MAGIC:
        if head.startswith(prefix) and (at_eight is None or head[8:12] == at_eight):
            return Sniffed(kind, name)
    if _bmp(head):
        return Sniffed("image", "bmp")
    if _mp3(head):
        return Sniffed("audio", "mp3")
    # A PDF's header may follow some junk; readers look in the first kilobyte.
    if b"%PDF-" in head[:1024]:
        return Sniffed("pdf", "pdf")
    if b"\0" in head:
        return Sniffed("binary", _binary_name(head))
    return Sniffed("text")


def _binary_name(head: bytes) -> str:
    for magic, name in (
        (b"PK\x03\x04", "a zip archive"),
        (b"\x1f\x8b", "gzip data"),
        (b"\x7fELF", "an executable"),
        (b"GGUF", "a GGUF model"),
    ):
        if head.startswith(magic):
            return name
    return "binary data"

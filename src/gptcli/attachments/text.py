"""Text files: UTF-8 (a BOM dropped), or UTF-16/32 with a byte-order mark; invalid bytes
replaced with a note."""

from __future__ import annotations

from collections.abc import Callable

from gptcli.attachments.attached import AttachmentError
from gptcli.attachments.kinds import bom_encoding


def decode_text(data: bytes, name: str, note: Callable[[str], None]) -> str:
    codec = bom_encoding(data)
    if codec is not None:  # the mark says how to read it: its NUL bytes are text
        return _decode(data, codec, name, note)
    nul = data.find(b"\0")
    if nul >= 0:
        raise AttachmentError(
            f"{name} contains a NUL byte at offset {nul}: it looks like binary data, not text"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return _decode(data, "utf-8", name, note)


def _decode(data: bytes, codec: str, name: str, note: Callable[[str], None]) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        note(
            f"{name} is not valid {codec.upper()} (first bad byte at offset {exc.start}); "
            "invalid bytes were replaced with U+FFFD"
        )
        return data.decode(codec, errors="replace")

"""Text files: UTF-8 (a BOM dropped), invalid bytes replaced with a note."""

from __future__ import annotations

from collections.abc import Callable

from gptcli.attachments.attached import AttachmentError


def decode_text(data: bytes, name: str, note: Callable[[str], None]) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        raise AttachmentError(
            f"{name} contains a NUL byte at offset {nul}: it looks like binary data, not text"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        note(
            f"{name} is not valid UTF-8 (first bad byte at offset {exc.start}); "
            "invalid bytes were replaced with U+FFFD"
        )
        return data.decode("utf-8", errors="replace")

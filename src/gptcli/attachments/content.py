"""An attachment from bytes in memory (stdin, a file's body, a web response), by its kind."""

from __future__ import annotations

from collections.abc import Callable

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.kinds import SNIFF_BYTES, sniff
from gptcli.attachments.limits import Limits
from gptcli.attachments.text import decode_text

Note = Callable[[str], None]


def from_bytes(data: bytes, name: str, note: Note, limits: Limits) -> Attached:
    """An attachment from bytes, of the kind their first bytes say."""
    kind = sniff(data[:SNIFF_BYTES])
    if kind.kind in ("image", "audio"):
        from gptcli.attachments.media import read_media

        return read_media(data, name, kind, limits)
    if kind.kind == "binary":
        raise AttachmentError(f"{name} looks like {kind.format}, not text")
    if kind.kind == "pdf":
        from gptcli.attachments.pdf import read_pdf

        return read_pdf(data, name, limits)
    return Attached("text", name, decode_text(data, name, note), data)

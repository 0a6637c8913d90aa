"""An attachment once read: its text for the model, its original bytes for the store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from gptcli.errors import UsageError
from gptcli.media import MediaItem, media_of, unmarked

AttachedKind = Literal["text", "pdf", "folder", "url", "image", "audio"]
MEDIA_KINDS = ("image", "audio")


class AttachmentError(UsageError):
    """An attachment that cannot be read or used (exit 2); the message names it."""


@dataclass(frozen=True)
class Attached:
    """One attachment: what it is, what it is called, and its text as the model sees it.

    ``original`` is what was read (the file's or the response's bytes); a folder has
    none of its own, its text stands for it. ``seconds`` is how long reading took.
    """

    kind: AttachedKind
    name: str
    text: str
    original: bytes | None = None
    seconds: float = 0.0
    format: str = ""  # an image's or sound's format (png, wav, ...)
    pages: tuple[str, ...] = field(default=(), repr=False)  # a PDF's text, page by page
    page_images: tuple[int, ...] = ()  # the pages of a PDF the model is shown as images

    @cached_property
    def media(self) -> MediaItem | None:
        """An image or sound: what the model takes in place of its text (a marker)."""
        if self.kind not in MEDIA_KINDS or self.original is None:
            return None
        return MediaItem(self.kind, self.format, self.name, self.original)  # type: ignore[arg-type]

    @cached_property
    def media_items(self) -> list[MediaItem]:
        """Every image or sound the model is given with this attachment: itself, or the
        page images in a PDF's text."""
        if self.media is not None:
            return [self.media]
        return media_of(self.text) if self.page_images else []

    @cached_property
    def kept_text(self) -> tuple[str, list[tuple[int, MediaItem]]]:
        """What a session keeps of the text: without the page images' markers (they are
        this process's own), and where each image stood."""
        return unmarked(self.text) if self.page_images else (self.text, [])

    @cached_property
    def data(self) -> bytes:
        """The bytes kept for this attachment: the original, else the text."""
        return self.original if self.original is not None else self.text.encode("utf-8")

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def text_bytes(self) -> bytes:
        return self.kept_text[0].encode("utf-8", "surrogatepass")

    @cached_property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text_bytes).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def block(self) -> str:
        """The attachment in a user message: under a header naming it (a folder's files
        each under their own)."""
        return attachment_block(self.kind, self.name, self.text)


def attachment_block(kind: str, name: str, text: str) -> str:
    body = text.rstrip()
    return body if kind == "folder" else f"=== {name} ===\n{body}"


def with_attachments(blocks: list[str], rest: str) -> str:
    """A user message: the attachments' blocks, then ``rest`` (what followed them)."""
    head = "\n\n".join(blocks)
    if not head:
        return rest
    return f"{head}\n\n{rest}" if rest else head

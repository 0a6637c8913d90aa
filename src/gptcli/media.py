"""Images and audio inside a message's text: a marker that names bytes registered here.

A message's media travel in its text, so every road that carries a message (fitting it
to the window, the history, /edit, sessions rebuilt from disk) carries them unchanged.
The marker holds a nonce made once per process, so a text that a user types, pastes or
attaches can never name media; only :func:`media_marker` makes one. A backend that can
take media splits a text at its markers (:func:`split_media`); one that cannot is
refused before anything is sent (answering/attaching.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

MediaKind = Literal["image", "audio"]
MEDIA_HINT = (
    "this model has no projector: images and audio need a vision or audio model and its "
    "projector file (--mmproj FILE)"
)
_registered: dict[str, MediaItem] = {}
_pattern: list[re.Pattern[str]] = []  # made with the nonce, on first use


@dataclass(frozen=True)
class MediaItem:
    """An image or a sound as read: its kind, format (png, wav, ...), name and bytes."""

    kind: MediaKind
    format: str
    name: str
    data: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _marker_pattern() -> re.Pattern[str]:
    if not _pattern:
        nonce = secrets.token_hex(8)
        _pattern.append(re.compile(f"<__gptcli_media_{nonce}_([0-9a-f]{{64}})__>"))
    return _pattern[0]


def media_marker(item: MediaItem) -> str:
    """The text that stands for ``item`` in a message (kept for this process's life)."""
    digest = item.sha256
    _registered.setdefault(digest, item)
    template = _marker_pattern().pattern
    return template.replace("([0-9a-f]{64})", digest)


def split_media(text: str) -> list[str | MediaItem]:
    """``text`` as its stretches of text and the media its markers name, in order (an
    empty text is dropped; a marker of media not registered here stays text)."""
    parts: list[str | MediaItem] = []
    last = 0
    for match in _marker_pattern().finditer(text):
        item = _registered.get(match.group(1))
        if item is None:
            continue
        if match.start() > last:
            parts.append(text[last : match.start()])
        parts.append(item)
        last = match.end()
    if last < len(text):
        parts.append(text[last:])
    return parts


def registered(digest: str) -> MediaItem | None:
    """The media registered under ``digest`` (its sha256), if any."""
    return _registered.get(digest)


def has_media(text: str) -> bool:
    return bool(_registered) and any(isinstance(p, MediaItem) for p in split_media(text))


def media_of(text: str) -> list[MediaItem]:
    """The media ``text`` names, in order."""
    if not _registered:
        return []
    return [p for p in split_media(text) if isinstance(p, MediaItem)]


def unmarked(text: str) -> tuple[str, list[tuple[int, MediaItem]]]:
    """``text`` without its media markers, and where each named media stood in what is
    left (what a session keeps of a text that holds media: the markers are this
    process's own)."""
    if not _registered:
        return text, []
    kept: list[str] = []
    placed: list[tuple[int, MediaItem]] = []
    size = 0
    for part in split_media(text):
        if isinstance(part, MediaItem):
            placed.append((size, part))
        else:
            kept.append(part)
            size += len(part)
    return "".join(kept), placed


def marked(text: str, placed: list[tuple[int, MediaItem | str]]) -> str:
    """``text`` with markers for the media in ``placed`` put back where :func:`unmarked`
    found them (a text in their place stands there as it is; an offset past the end puts
    it at the end)."""
    parts: list[str] = []
    last = 0
    for at, item in sorted(placed, key=lambda pair: pair[0]):
        at = min(max(at, last), len(text))
        parts += [text[last:at], item if isinstance(item, str) else media_marker(item)]
        last = at
    parts.append(text[last:])
    return "".join(parts)

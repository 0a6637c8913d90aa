"""Attachments in a request: read before the model loads, counted once it has, and the
part of a user message that follows them (what a session stores as its content)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gptcli.answering.environment import Environment
from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.limits import DEFAULT_LIMITS
from gptcli.attachments.read import STDIN, read_attachment
from gptcli.config import PdfPagesMode
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend, MediaFacts, Message
from gptcli.media import MEDIA_HINT


@dataclass(frozen=True)
class AttachmentInfo:
    """What a script is told of one attachment (``--json``, ``--jsonl``)."""

    kind: str
    name: str
    bytes: int
    tokens: int
    read_s: float
    encode_s: float | None = None  # an image's or sound's encoding, where the model encodes
    page_images: tuple[int, ...] = ()  # a PDF's pages shown as images

    def record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "kind": self.kind,
            "name": self.name,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "read_s": round(self.read_s, 4),
        }
        if self.encode_s is not None:
            record["encode_s"] = round(self.encode_s, 4)
        if self.page_images:
            record["page_images"] = list(self.page_images)
        return record


def read_attachments(sources: Sequence[str], env: Environment) -> list[Attached]:
    """Each of ``sources`` read (``-`` is stdin, once); the first that cannot be is refused
    (AttachmentError, exit 2) before anything is sent or saved."""
    if list(sources).count(STDIN) > 1:
        raise AttachmentError("-a - (stdin) can be given once")
    return [read_attachment(source, env.note, stdin=env.stdin) for source in sources]


def counted(attached: Sequence[Attached], backend: Backend) -> list[AttachmentInfo]:
    """The attachments with the tokens each one's block takes in a message; an image or
    sound is encoded now (its seconds reported). Raises AttachmentError (exit 2, before
    anything is sent or saved) for media the model does not take."""
    if not attached:
        return []
    encoded = [check_media(item, backend) for item in attached]
    empty = backend.count_tokens([Message("user", "")])
    return [
        AttachmentInfo(
            item.kind,
            item.name,
            item.size,
            max(0, backend.count_tokens([Message("user", item.block())]) - empty),
            item.seconds,
            seconds,
            item.page_images,
        )
        for item, seconds in zip(attached, encoded, strict=True)
    ]


def check_media(item: Attached, backend: Backend) -> float | None:
    """Whether ``backend`` takes ``item``'s images and sounds (the attachment itself, or a
    PDF's page images), the one place that asks: the seconds encoding them took; None for
    an attachment that is text only."""
    media = item.media_items
    if not media:
        return None
    found = abilities(backend)
    seconds = 0.0
    for each in media:
        if found.media is None or found.media_facts is None:
            what = "an image" if each.kind == "image" else "audio"
            raise AttachmentError(f"{item.name} is {what} ({each.format.upper()}); {MEDIA_HINT}")
        if not found.media_facts.takes(each.kind):
            what = "images" if each.kind == "image" else "audio"
            raise AttachmentError(f"{item.name}: this model's projector takes no {what}")
        seconds += found.media.prepare_media(each)
    return seconds


def for_model(
    attached: Sequence[Attached],
    backend: Backend,
    pdf_pages: PdfPagesMode,
    note: Callable[[str], None],
) -> list[Attached]:
    """The attachments as the loaded model takes them: a PDF with its pages as images where
    ``pdf_pages`` asks for them (auto: the pages with little text, for a model known to
    see). Refused in one line (exit 2): images asked of a model that takes none, and a
    PDF without text for a model shown no page of it."""
    facts = abilities(backend).media_facts
    sees = facts is not None and facts.vision
    found = []
    for item in attached:
        if item.kind == "pdf" and item.pages:
            mode = pdf_pages
            if mode in ("images", "both") and not sees:
                why = MEDIA_HINT if facts is None else "this model's projector takes no images"
                raise AttachmentError(
                    f"{item.name}: --pdf-pages {mode} shows its pages as images; {why}"
                )
            if mode == "auto" and not (sees and facts is not None and facts.known):
                mode = "text"
            item = _with_pages(item, mode, facts, note)
        found.append(item)
    return found


def _with_pages(
    item: Attached, mode: PdfPagesMode, facts: MediaFacts | None, note: Callable[[str], None]
) -> Attached:
    from gptcli.attachments.pages import SERVER_SIDE, with_page_images
    from gptcli.attachments.pdf import no_text_layer

    if mode != "text":
        side = (facts.image_size if facts is not None else None) or SERVER_SIDE
        item = with_page_images(item, mode, side, DEFAULT_LIMITS, note)
    if not item.page_images and not any(item.pages):
        raise no_text_layer(item.name, item.pages)
    return item


def after_attachments(text: str, attached: Sequence[Attached]) -> str:
    """What follows the attachments' blocks in a user message built with them first."""
    head = "\n\n".join(item.block() for item in attached)
    if not head:
        return text
    if not text.startswith(head):
        raise ValueError("the message does not start with its attachments")
    return text[len(head) :].removeprefix("\n\n")


def dropped_path(text: str) -> str | None:
    """The existing file or folder a chat message is nothing but, as terminals paste or drop
    one: quoted, with backslash-escaped spaces, or as a ``file://`` URI. A bare word without
    a ``/`` (``notes``) is a message, not a path."""
    import shlex
    from urllib.parse import unquote, urlsplit

    line = text.strip()
    if not line or "\n" in line:
        return None
    try:
        words = shlex.split(line)
    except ValueError:  # an unclosed quote: a message
        return None
    if len(words) != 1:
        return None
    word = words[0]
    if word.startswith("file://"):
        word = unquote(urlsplit(word).path)
    if "/" not in word:
        return None
    return word if Path(word).expanduser().exists() else None


_MENTION = re.compile(r"(?:(?<=\s)|^)@(\S+)")


def mentioned_paths(text: str) -> list[str]:
    """The ``@path`` words of a chat message that name an existing file or folder (an
    ``@`` before anything else, such as ``@alice``, stays text)."""
    found = []
    for match in _MENTION.finditer(text):
        word = match.group(1).rstrip(".,;:!?)\"'")
        if word and Path(word).expanduser().exists() and word not in found:
            found.append(word)
    return found

"""Attachments in a request: read before the model loads, counted once it has, and the
part of a user message that follows them (what a session stores as its content)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptcli.answering.environment import Environment
from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.read import STDIN, read_attachment
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend, Message
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
        )
        for item, seconds in zip(attached, encoded, strict=True)
    ]


def check_media(item: Attached, backend: Backend) -> float | None:
    """Whether ``backend`` takes ``item`` (an image or sound), the one place that asks:
    the seconds encoding it took; None for an attachment that is text."""
    media = item.media
    if media is None:
        return None
    found = abilities(backend)
    if found.media is None or found.media_facts is None:
        what = "an image" if media.kind == "image" else "audio"
        raise AttachmentError(f"{item.name} is {what} ({media.format.upper()}); {MEDIA_HINT}")
    if not found.media_facts.takes(media.kind):
        what = "images" if media.kind == "image" else "audio"
        raise AttachmentError(f"{item.name}: this model's projector takes no {what}")
    return found.media.prepare_media(media)


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

"""Images and audio for an OpenAI-compatible server: content parts, and its refusal of them.

A user message that names media (gptcli.media) is sent as a list of content parts:
text, ``image_url`` with a ``data:`` URL, ``input_audio`` with base64 and its format.
A server whose model takes no images says so in many words (llama-server: "image input
is not supported", vLLM: "is not a multimodal model", OpenAI: "only supported by certain
models"); any of them is one line, exit 2, as a local model without a projector is.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from gptcli.errors import UsageError
from gptcli.media import MediaItem, split_media

MEDIA_TOKENS_GUESS = 256  # what an image or a sound is counted as before a server says
_MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
_REFUSED = re.compile(
    r"(image|audio|multimodal|vision) input is not supported|not a multimodal model|"
    r"does not support (image|audio|vision|multimodal)|only supported by certain models|"
    r"no vision|vision is not supported|mmproj",
    re.IGNORECASE,
)


class MediaRefused(UsageError):
    """The server's model takes no images or audio (exit 2)."""


def content_of(text: str) -> str | list[dict[str, Any]]:
    """A message's content as the server takes it: the text, or parts where it names media."""
    parts = split_media(text)
    if not any(isinstance(p, MediaItem) for p in parts):
        return text
    return [_part(p) for p in parts]


def _part(part: str | MediaItem) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    data = base64.b64encode(part.data).decode("ascii")
    if part.kind == "audio":
        return {"type": "input_audio", "input_audio": {"data": data, "format": part.format}}
    mime = _MIME.get(part.format, f"image/{part.format}")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def sends_media(payload: dict[str, Any]) -> bool:
    return any(isinstance(m.get("content"), list) for m in payload.get("messages", ()))


def media_refusal(status: int, body: str, model: str) -> MediaRefused | None:
    """The error for a server that refused a request with media because of them."""
    if status not in (400, 415, 422, 500, 501) or not _REFUSED.search(body):
        return None
    return MediaRefused(
        f"the server's model {model!r} takes no images or audio (HTTP {status}): "
        f"{' '.join(body.split())[:160]}"
    )

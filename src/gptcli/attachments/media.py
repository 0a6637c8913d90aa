"""Images and sounds as attachments: checked here, taken by a model with a projector.

What is checked before any decoder runs: the size cap, and for an image the pixels its
header claims (Pillow reads the header only), so a small file that unpacks to gigabytes
is refused in one line. The model sees a marker in the message's text (gptcli.media);
whether the model takes it is asked once it has loaded (answering/attaching.py).
"""

from __future__ import annotations

import io

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.kinds import Sniffed
from gptcli.attachments.limits import Limits
from gptcli.media import MediaItem, media_marker


def read_media(data: bytes, name: str, kind: Sniffed, limits: Limits) -> Attached:
    """An image or sound attachment from its bytes (AttachmentError past a cap)."""
    what = "an image" if kind.kind == "image" else "a sound file"
    if len(data) > limits.media_bytes:
        raise AttachmentError(
            f"{name} is {len(data):,} bytes, over the cap of {limits.media_bytes:,} for {what}"
        )
    if kind.kind == "image":
        _check_pixels(data, name, kind.format, limits.image_pixels)
    item = MediaItem("image" if kind.kind == "image" else "audio", kind.format, name, data)
    return Attached(item.kind, name, media_marker(item), data, format=kind.format)


def _check_pixels(data: bytes, name: str, fmt: str, cap: int) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = cap  # far over the cap, by Pillow's own measure
    except (UnidentifiedImageError, OSError, ValueError):
        raise AttachmentError(
            f"{name} is an image ({fmt.upper()}) whose header cannot be read"
        ) from None
    if width * height > cap:
        raise AttachmentError(
            f"{name} claims {width:,} x {height:,} pixels, over the cap of {cap:,} for an image"
        )

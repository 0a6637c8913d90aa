"""The caps on what one attachment may cost, with their documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much one attachment may be; the README's "Attachments" lists the defaults."""

    file_bytes: int = 32 * MiB  # a text file or a PDF
    media_bytes: int = 20 * MiB  # an image or a sound file
    image_pixels: int = 50_000_000  # an image's width x height, as its header says
    pdf_pages: int = 1000
    pdf_page_images: int = 50  # pages of one PDF drawn as images for a model that sees
    folder_files: int = 500  # text files taken from one folder
    folder_bytes: int = 2 * MiB  # their text, in total
    folder_entries: int = 20_000  # names looked at in one folder tree, taken or not
    url_bytes: int = 10 * MiB  # a fetched body
    url_seconds: float = 30.0  # connecting, redirects and the whole body
    url_redirects: int = 5


DEFAULT_LIMITS = Limits()

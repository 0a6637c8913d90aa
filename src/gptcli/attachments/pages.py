"""A PDF's pages as images, for a model that sees: which pages, drawn how big.

pypdfium2 draws them (PDFium, Chrome's PDF renderer; its wheels bundle the binary).
A page is drawn at the size the projector works at, its longest side the encoder's
image size, so nothing is drawn at print resolution to be scaled down again, and the
bitmap stays within that side squared whatever size the page claims. PDFium only
sees a file that pypdf read first (encryption checked, the page count capped), and
only the pages chosen, at most ``Limits.pdf_page_images`` of them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.limits import Limits
from gptcli.attachments.pdf import pages_text
from gptcli.config import PdfPagesMode
from gptcli.media import MediaItem, media_marker

LITTLE_TEXT = 200  # characters: a page with less is a scan, a chart or a slide
SERVER_SIDE = 1024  # the longest side drawn for a server, whose encoder's size is unknown


def image_pages(pages: Sequence[str], mode: PdfPagesMode) -> list[int]:
    """The pages (numbered from 1) ``mode`` shows as images to a model that sees."""
    if mode == "text":
        return []
    return [n for n, text in enumerate(pages, 1) if mode != "auto" or len(text) < LITTLE_TEXT]


def with_page_images(
    attached: Attached,
    mode: PdfPagesMode,
    side: int,
    limits: Limits,
    note: Callable[[str], None],
) -> Attached:
    """``attached`` (a PDF read with its pages) with the pages ``mode`` chooses drawn
    ``side`` pixels on their longest side, each before its page's text (instead of it
    with ``images``). By default a blank page is left out; past the cap, the rest of
    the pages go as text, with a note."""
    start = time.perf_counter()
    numbers = image_pages(attached.pages, mode)
    if len(numbers) > limits.pdf_page_images:
        note(
            f"{attached.name}: {len(numbers)} pages to show as images, over the cap of "
            f"{limits.pdf_page_images}; pages from {numbers[limits.pdf_page_images]} on go "
            "as text"
        )
        numbers = numbers[: limits.pdf_page_images]
    drawn = render_pages(attached.original or b"", numbers, side, attached.name)
    markers: list[str | None] = [None] * len(attached.pages)
    shown = []
    for number, (png, blank) in zip(numbers, drawn, strict=True):
        if blank and mode == "auto":
            continue
        item = MediaItem("image", "png", f"{attached.name} page {number}", png)
        markers[number - 1] = media_marker(item)
        shown.append(number)
    texts = [
        "" if mode == "images" and markers[i] else text for i, text in enumerate(attached.pages)
    ]
    seconds = attached.seconds + time.perf_counter() - start  # read_s: read and drawn
    text = pages_text(texts, markers)
    return replace(attached, text=text, page_images=tuple(shown), seconds=seconds)


def render_pages(
    data: bytes, numbers: Sequence[int], side: int, name: str
) -> list[tuple[bytes, bool]]:
    """Pages ``numbers`` of the PDF ``data`` as PNGs ``side`` pixels on their longest
    side, each with whether it is blank (one colour all over)."""
    if not numbers:
        return []
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise AttachmentError(f"{name}: its pages cannot be drawn ({exc})") from None
    try:
        return [_render(document, number, side, name) for number in numbers]
    finally:
        document.close()


def _render(document: object, number: int, side: int, name: str) -> tuple[bytes, bool]:
    import pypdfium2 as pdfium

    try:
        page = document[number - 1]  # type: ignore[index]
    except (pdfium.PdfiumError, IndexError) as exc:
        raise AttachmentError(f"{name}: page {number} cannot be drawn ({exc})") from None
    try:
        width, height = page.get_size()
        scale = side / max(width, height, 1.0)
        image = page.render(scale=scale).to_pil().convert("RGB")
    except pdfium.PdfiumError as exc:
        raise AttachmentError(f"{name}: page {number} cannot be drawn ({exc})") from None
    finally:
        page.close()
    png = io.BytesIO()
    image.save(png, "PNG")
    return png.getvalue(), all(low == high for low, high in image.getextrema())

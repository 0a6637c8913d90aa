"""A PDF as text, page by page under ``[page N]`` markers so answers can cite pages.

pypdf reads it in pure Python: no native decoder sees the file, and its own limits
bound what a compressed stream may expand to (a zip bomb stops with an error). A
page tree that loops, a broken file and an encrypted one are each refused in one
line. A PDF with no text at all (scanned pages) is read too: a model that sees may
take its pages as images (attachments/pages.py); for one that does not, it is
refused in one line then (:func:`no_text_layer`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from io import BytesIO

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.limits import Limits

NO_TEXT = "(no text on this page)"


def read_pdf(data: bytes, name: str, limits: Limits) -> Attached:
    """A PDF attachment: its text under page markers, each page's text kept beside it."""
    pages = pdf_pages(data, name, limits)
    return Attached("pdf", name, pages_text(pages), data, pages=pages)


def pdf_pages(data: bytes, name: str, limits: Limits) -> tuple[str, ...]:
    """The text of every page, stripped ("" for a page without any)."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # pypdf reports what it repairs through warnings and logging: not for the user's screen.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(BytesIO(data), strict=False)
            if reader.is_encrypted and not _opened_without_password(reader):
                raise AttachmentError(
                    f"{name} is an encrypted PDF: decrypt it first (e.g. qpdf --decrypt)"
                )
            count = len(reader.pages)
            if count > limits.pdf_pages:
                raise AttachmentError(
                    f"{name} has {count:,} pages, over the cap of {limits.pdf_pages:,}"
                )
            return tuple((page.extract_text() or "").strip() for page in reader.pages)
    except AttachmentError:
        raise
    except FileNotDecryptedError:
        raise AttachmentError(
            f"{name} is an encrypted PDF: decrypt it first (e.g. qpdf --decrypt)"
        ) from None
    except RecursionError:
        raise AttachmentError(f"{name} is not a readable PDF (its page tree loops)") from None
    except Exception as exc:  # a hostile file can trip any of pypdf's paths
        raise AttachmentError(f"{name} is not a readable PDF ({_reason(exc)})") from None


def pages_text(pages: Sequence[str], images: Sequence[str | None] = ()) -> str:
    """The pages under their markers; ``images[i]``, where given, is page i+1's image
    (a media marker) placed before its text, which it replaces when that is empty."""
    blocks = []
    for number, text in enumerate(pages, 1):
        image = images[number - 1] if number <= len(images) else None
        body = "\n".join(part for part in (image, text) if part) or NO_TEXT
        blocks.append(f"[page {number}]\n{body}")
    return "\n\n".join(blocks)


def no_text_layer(name: str, pages: Sequence[str]) -> AttachmentError:
    """The refusal of a PDF without text for a model that takes no page images."""
    which = "its page has no" if len(pages) == 1 else f"none of its {len(pages)} pages has"
    return AttachmentError(
        f"{name} has no text layer ({which} text: scanned or image-only; run OCR on it "
        "first, e.g. ocrmypdf, or show its pages to a vision model with --mmproj)"
    )


def _opened_without_password(reader: object) -> bool:
    """An "encrypted" PDF with an empty user password opens for anyone (common for
    files that only restrict printing or copying)."""
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:
        return False


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:120] if text else type(exc).__name__

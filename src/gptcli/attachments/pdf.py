"""A PDF as text, page by page under ``[page N]`` markers so answers can cite pages.

pypdf reads it in pure Python: no native decoder sees the file, and its own limits
bound what a compressed stream may expand to (a zip bomb stops with an error). A
page tree that loops, a broken file, an encrypted one and one with no text at all
(scanned pages) are each refused in one line.
"""

from __future__ import annotations

import logging
import warnings
from io import BytesIO

from gptcli.attachments.attached import AttachmentError
from gptcli.attachments.limits import Limits

NO_TEXT = "(no text on this page)"


def pdf_text(data: bytes, name: str, limits: Limits) -> str:
    """The text of every page, each under ``[page N]``; AttachmentError when there is none."""
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
            pages = [(page.extract_text() or "").strip() for page in reader.pages]
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
    if not any(pages):
        which = "its page has" if len(pages) == 1 else f"none of its {len(pages)} pages has"
        raise AttachmentError(
            f"{name} has no text layer ({which} text: scanned or image-only; "
            "run OCR on it first, e.g. ocrmypdf)"
        )
    return "\n\n".join(
        f"[page {number}]\n{text or NO_TEXT}" for number, text in enumerate(pages, 1)
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

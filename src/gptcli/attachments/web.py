"""A URL as text: fetched with caps on time, size and redirects; HTML reduced to its article.

Only ``http`` and ``https``. The body is read in pieces and refused as soon as it
passes the size cap or the time cap (a server that streams without end is cut);
HTML becomes Markdown of its main content (readability, then markdownify), plain
text and JSON are kept as they are, a PDF is read as one; any other type is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.limits import Limits

TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json", "text/x-")
HTML_TYPES = ("text/html", "application/xhtml+xml")
USER_AGENT = "gptcli (attachment fetch)"


def read_url(url: str, note: Callable[[str], None], limits: Limits) -> Attached:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise AttachmentError(f"{url}: only http:// and https:// URLs can be attached")
    body, content_type, charset = _fetch(url, limits)
    from gptcli.attachments.content import from_bytes
    from gptcli.attachments.kinds import SNIFF_BYTES, sniff

    if sniff(body[:SNIFF_BYTES]).kind in ("image", "audio"):
        from_bytes(body, url, note, limits)  # refused, naming what such a file needs
    if content_type == "application/pdf" or body.startswith(b"%PDF-"):
        return Attached("url", url, from_bytes(body, url, note, limits).text, body)
    if content_type in HTML_TYPES:
        return Attached("url", url, html_text(_decode(body, charset)), body)
    if content_type.startswith(TEXT_TYPES) or content_type.endswith(("+json", "+xml")):
        return Attached("url", url, from_bytes(body, url, note, limits).text, body)
    raise AttachmentError(
        f"{url} is {content_type or 'of no content type'}: only HTML, text, JSON and PDF "
        "can be attached"
    )


def _fetch(url: str, limits: Limits) -> tuple[bytes, str, str | None]:
    """The body, its content type (lower case, no parameters) and its charset, if given."""
    import httpx

    deadline = time.monotonic() + limits.url_seconds
    timeout = httpx.Timeout(min(10.0, limits.url_seconds))
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=limits.url_redirects,
                timeout=timeout,
                headers={"User-Agent": USER_AGENT},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise AttachmentError(
                    f"{url}: the server answered {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.url_bytes:
                raise _too_big(url, limits)
            parts: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limits.url_bytes:
                    raise _too_big(url, limits)
                if time.monotonic() > deadline:
                    raise _too_slow(url, limits)
                parts.append(chunk)
            content_type = response.headers.get("content-type", "")
            charset = response.charset_encoding
    except httpx.TooManyRedirects:
        raise AttachmentError(
            f"{url}: more than {limits.url_redirects} redirects (a redirect loop?)"
        ) from None
    except httpx.TimeoutException:
        raise _too_slow(url, limits) from None
    except httpx.HTTPError as exc:
        raise AttachmentError(f"{url}: cannot fetch it ({_reason(exc)})") from None
    return b"".join(parts), content_type.split(";")[0].strip().lower(), charset


def _too_big(url: str, limits: Limits) -> AttachmentError:
    return AttachmentError(f"{url} is over the cap of {limits.url_bytes:,} bytes for a URL")


def _too_slow(url: str, limits: Limits) -> AttachmentError:
    return AttachmentError(f"{url} took longer than {limits.url_seconds:g} s to fetch")


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def html_text(html: str) -> str:
    """The main content of an HTML page as Markdown, under its title."""
    from markdownify import markdownify
    from readability import Document

    if not html.strip():
        return ""
    document = Document(html)
    body = markdownify(document.summary(html_partial=True), heading_style="ATX", strip=["a", "img"])
    lines = [line.rstrip() for line in body.splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    title = " ".join((document.short_title() or "").split())
    return f"# {title}\n\n{text.strip()}" if title and title not in text[:200] else text.strip()

"""A PDF's pages as images for a model that sees (attachments/pages.py): which pages are
drawn, at what size, how a session keeps them, and through the installed script with the
tiny test projector (tests/mmproj.py): tokens counted, the text-only road unchanged, a
model that takes no images refused in one line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gptcli.attachments.attached import Attached
from gptcli.attachments.limits import Limits
from gptcli.attachments.pages import with_page_images
from gptcli.attachments.read import read_attachment
from gptcli.media import MediaItem, split_media
from tests.conftest import Gptcli
from tests.mmproj import write_projector
from tests.test_attachments import make_pdf

FAST = ("-t", "0", "-n", "4", "--threads", "1", "--seed", "1")
LONG = "The budget for the bridge is 42 euros, paid in spring. " * 5  # > 200 characters


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_projector(tmp_path_factory.mktemp("pdfpages") / "mmproj-test.gguf")


def _read(path: Path) -> Attached:
    attached = read_attachment(str(path), lambda line: None)
    assert isinstance(attached, Attached)
    return attached


def _sizes(attached: Attached) -> list[tuple[int, int]]:
    from PIL import Image

    return [Image.open(io.BytesIO(item.data)).size for item in attached.media_items]


def test_auto_draws_the_pages_with_little_text_at_the_encoders_size(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "r.pdf"
    drawing = canvas.Canvas(str(path))  # A4 portrait: 595 x 842 points
    drawing.drawString(72, 720, LONG)
    drawing.showPage()
    drawing.rect(72, 600, 200, 100, fill=1)  # a chart: no text
    drawing.showPage()
    drawing.showPage()  # blank: not worth an image
    drawing.save()
    notes: list[str] = []
    pdf = _read(path)
    auto = with_page_images(pdf, "auto", 64, Limits(), notes.append)
    assert auto.page_images == (2,) and _sizes(auto) == [(46, 64)]  # longest side 64
    parts = split_media(auto.text)
    assert parts[0] == f"[page 1]\n{LONG.strip()}\n\n[page 2]\n"
    assert isinstance(parts[1], MediaItem) and parts[1].format == "png"
    assert parts[2] == "\n\n[page 3]\n(no text on this page)"
    images = with_page_images(pdf, "images", 64, Limits(), notes.append)
    assert images.page_images == (1, 2, 3) and "budget" not in images.text  # pages, not text
    both = with_page_images(pdf, "both", 32, Limits(), notes.append)
    assert both.page_images == (1, 2, 3) and "budget" in both.text
    assert max(max(size) for size in _sizes(both)) == 32
    assert with_page_images(pdf, "text", 64, Limits(), notes.append).text == pdf.text
    assert not notes
    chart_first = _read(make_pdf(tmp_path / "c.pdf", ["", LONG]))
    capped = with_page_images(chart_first, "images", 64, Limits(pdf_page_images=1), notes.append)
    assert capped.page_images == (1,) and "budget" in capped.text  # page 2 goes as text
    assert notes == [
        "c.pdf: 2 pages to show as images, over the cap of 1; pages from 2 on go as text"
    ]


def test_a_session_keeps_the_page_images_and_rebuilds_the_message(tmp_path: Path) -> None:
    from gptcli.conversation.recorder import _attached_of, attachment_record, user_text
    from gptcli.store.blobs import BlobStore
    from gptcli.store.sessions import StoredMessage

    pdf = _read(make_pdf(tmp_path / "d.pdf", ["Intro.", ""]))
    shown = with_page_images(pdf, "auto", 64, Limits(), lambda line: None)
    assert shown.page_images == (1, 2)
    record = attachment_record(shown)
    assert [(m["page"], m["format"]) for m in record["media"]] == [(1, "png"), (2, "png")]
    blobs = BlobStore(tmp_path)
    for data in (shown.data, shown.text_bytes, *(m.data for m in shown.media_items)):
        blobs.put(data)
    assert b"__gptcli_media" not in shown.text_bytes  # the markers are this process's own
    stored = StoredMessage("user", "What is on page 2?", attachments=[record])
    assert stored.attachment_hashes == {
        record["sha256"],
        record["text_sha256"],
        *(m["sha256"] for m in record["media"]),
    }
    assert user_text(stored, blobs) == f"{shown.block()}\n\nWhat is on page 2?"
    again = _attached_of(record, blobs)
    assert again is not None and again.text == shown.text and again.page_images == (1, 2)
    (tmp_path / "attachments" / record["media"][1]["sha256"]).unlink()
    missing: list[str] = []
    rebuilt = user_text(stored, blobs, missing)
    assert "[page 2]\n(the image d.pdf page 2 is missing: its stored copy was removed)" in rebuilt
    assert missing == ["d.pdf page 2"] and _attached_of(record, blobs) is None


def _ask(gptcli: Gptcli, *args: str) -> dict[str, Any]:
    done = gptcli("ask", *FAST, "--json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    (attached,) = result["attachments"]
    return dict(attached)


def test_page_images_reach_the_model_through_the_projector(
    gptcli: Gptcli, projector: Path, tmp_path: Path
) -> None:
    pdf = str(make_pdf(tmp_path / "report.pdf", [LONG, ""]))
    seen = _ask(gptcli, "--mmproj", str(projector), "-a", pdf, "What is on page 2?")
    text = _ask(gptcli, "--mmproj", str(projector), "--pdf-pages", "text", "-a", pdf, "Page 2?")
    assert seen["kind"] == "pdf" and seen["page_images"] == [2] and seen["encode_s"] >= 0
    assert "page_images" not in text and "encode_s" not in text
    # The image's 16 tokens (64 x 64 pixels, 16-pixel patches) stand for page 2's note.
    assert 16 - 10 <= seen["tokens"] - text["tokens"] < 16
    refused = gptcli("ask", *FAST, "--pdf-pages", "images", "-a", pdf, "Page 2?")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "report.pdf: --pdf-pages images" in refused.stderr and "--mmproj" in refused.stderr
    scan = str(make_pdf(tmp_path / "scan.pdf", [""]))
    blind = gptcli("ask", *FAST, "-a", scan, "What is it?")
    assert blind.returncode == 2 and blind.stderr.count("\n") == 1, blind.stderr
    assert "scan.pdf has no text layer (its page has no text" in blind.stderr
    sees = _ask(gptcli, "--mmproj", str(projector), "-a", scan, "What is it?")
    assert sees["page_images"] == [1]


def test_a_batch_item_may_set_pdf_pages() -> None:
    from gptcli.conversation.batchitems import Item, ItemError, read_items

    lines = [b'{"prompt": "a", "pdf_pages": "images"}', b'{"prompt": "b", "pdf_pages": "all"}']
    good, bad = read_items(lines, plain=False)
    assert isinstance(good, Item) and good.pdf_pages == "images" and not good.unknown
    assert (
        isinstance(bad, ItemError) and "pdf_pages must be auto, text, images or both" in bad.message
    )

"""Reading attachments, in process: kinds by content, text, folders (.gitignore, caps,
skips), PDFs (pages, encrypted, broken, image-only), the blob store and sessions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gptcli.answering.attaching import dropped_path, for_model
from gptcli.attachments.attached import AttachmentError
from gptcli.attachments.kinds import sniff
from gptcli.attachments.limits import Limits
from gptcli.attachments.read import read_attachment
from tests.fakes import ScriptedBackend

notes: list[str] = []


def read(source: str | Path, limits: Limits | None = None) -> object:
    notes.clear()
    return read_attachment(str(source), notes.append, limits or Limits())


# -- kinds -------------------------------------------------------------------------------

MAGIC = [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image", "png"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "image", "jpeg"),
    (b"GIF89a\x01\0\x01\0", "image", "gif"),
    (b"RIFF\x24\0\0\0WEBPVP8 ", "image", "webp"),
    (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", "image", "bmp"),
    (b"RIFF\x24\0\0\0WAVEfmt ", "audio", "wav"),
    (b"ID3\x04\0\0\0\0\0\0", "audio", "mp3"),
    (b"\xff\xfb\x90\x64\0", "audio", "mp3"),
    (b"fLaC\0\0\0\x22", "audio", "flac"),
    (b"%PDF-1.7\n", "pdf", "pdf"),
    (b"junk\n%PDF-1.4\n", "pdf", "pdf"),
    (b"PK\x03\x04\x14\0\0\0", "binary", "a zip archive"),
    (b"plain\0text", "binary", "binary data"),
    (b"BMW and Audi are car makers.", "text", ""),
    ("caf\u00e9 \U0001f600".encode(), "text", ""),
]


@pytest.mark.parametrize(("head", "kind", "name"), MAGIC)
def test_sniff_decides_by_content(head: bytes, kind: str, name: str) -> None:
    found = sniff(head)
    assert (found.kind, found.format) == (kind, name)


def test_a_misnamed_image_is_read_as_an_image(tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "notes.txt"  # the name says text, the bytes say PNG
    Image.new("RGB", (8, 8), (0, 128, 255)).save(photo, "PNG")
    attached = read(photo)
    assert (attached.kind, attached.format) == ("image", "png")  # type: ignore[attr-defined]
    assert attached.media is not None and attached.media.data == photo.read_bytes()  # type: ignore[attr-defined]
    truncated = tmp_path / "cut.txt"
    truncated.write_bytes(MAGIC[0][0])
    with pytest.raises(AttachmentError, match=r"cut.txt is an image \(PNG\) whose header"):
        read(truncated)


def test_text_file_and_its_header(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"\xef\xbb\xbfhello\n\n")
    attached = read(path)
    assert attached.kind == "text" and attached.text == "hello\n\n"  # type: ignore[attr-defined]
    assert attached.block() == "=== a.md ===\nhello"  # type: ignore[attr-defined]


def test_binary_missing_and_special_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"x\0y")
    with pytest.raises(AttachmentError, match="binary"):
        read(tmp_path / "b.bin")
    with pytest.raises(AttachmentError, match="file not found"):
        read(tmp_path / "nope")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AttachmentError, match="not a regular file"):
        read(fifo)


def test_invalid_utf8_is_replaced_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "l1.txt").write_bytes(b"caf\xe9")
    assert read(tmp_path / "l1.txt").text == "caf\ufffd"  # type: ignore[attr-defined]
    assert "offset 3" in notes[0]


def test_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 101)
    with pytest.raises(AttachmentError, match="over the cap of 100"):
        read(tmp_path / "big.txt", Limits(file_bytes=100))


def test_non_http_schemes_are_refused() -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/a"):
        with pytest.raises(AttachmentError, match="only http"):
            read(url)


# -- folders -----------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "README.md").write_text("# Demo\n")
    (root / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (root / "debug.log").write_text("noise\n")
    (root / "keep.log").write_text("kept\n")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("built\n")
    (root / "src" / ".gitignore").write_text("secret.txt\n")
    (root / "src" / "secret.txt").write_text("hidden\n")
    (root / "logo.png").write_bytes(MAGIC[0][0])
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")


def test_folder_respects_gitignore_and_skips_binaries(tmp_path: Path) -> None:
    make_tree(tmp_path / "demo")
    attached = read(tmp_path / "demo")
    text = attached.text  # type: ignore[attr-defined]
    assert attached.kind == "folder"  # type: ignore[attr-defined]
    headers = [line for line in text.splitlines() if line.startswith("=== ")]
    assert headers == [
        "=== demo/.gitignore ===",
        "=== demo/README.md ===",
        "=== demo/keep.log ===",
        "=== demo/src/.gitignore ===",
        "=== demo/src/app.py ===",
    ]
    assert "noise" not in text and "built" not in text and "hidden" not in text
    assert "demo/logo.png: skipped, not text (png)" in notes
    assert notes[-1].startswith("demo/: took 5 text files")
    assert "4 ignored by .gitignore" in notes[-1]  # debug.log, build/, secret.txt, .git


def test_folder_caps_files_and_bytes(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"f{index}.txt").write_text("0123456789")
    attached = read(tmp_path, Limits(folder_files=2))
    assert attached.text.count("=== ") == 2  # type: ignore[attr-defined]
    assert sum("over the cap of 2 files" in n for n in notes) == 3
    attached = read(tmp_path, Limits(folder_bytes=35))
    assert attached.text.count("=== ") == 3  # type: ignore[attr-defined]
    assert sum("over the cap of 35 bytes" in n for n in notes) == 2


def test_folder_never_follows_links_or_reads_fifos(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    os.mkfifo(tmp_path / "pipe")
    attached = read(tmp_path)
    assert attached.text.count("=== ") == 1  # type: ignore[attr-defined]
    skipped = {n.split(": skipped, ")[0].split("/", 1)[1]: n for n in notes if "skipped," in n}
    assert set(skipped) == {"link.txt", "loop", "pipe"}
    assert "not a regular file" in skipped["pipe"]


def test_folder_without_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(MAGIC[0][0])
    with pytest.raises(AttachmentError, match="no text files"):
        read(tmp_path)


# -- sessions ----------------------------------------------------------------------------


def test_a_schema_1_session_is_migrated_and_written_as_2(tmp_path: Path) -> None:
    from gptcli.store.sessions import SCHEMA, SessionStore

    store = SessionStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path("old").write_text('{"schema": 1, "messages": [{"role": "user", "content": "hi"}]}')
    session = store.load("old")
    assert session.schema == SCHEMA == 2 and session.messages[0].content == "hi"
    store.update("old", lambda s: None)
    assert '"schema": 2' in store.path("old").read_text()


def test_user_text_rebuilds_the_message_the_model_saw(tmp_path: Path) -> None:
    from gptcli.answering.attaching import after_attachments
    from gptcli.answering.inputs import compose_prompt
    from gptcli.conversation.recorder import attachment_record, user_text
    from gptcli.store.blobs import BlobStore
    from gptcli.store.sessions import StoredMessage

    (tmp_path / "a.txt").write_text("alpha\n")
    make_tree(tmp_path / "tree")
    attached = [read(tmp_path / "a.txt"), read(tmp_path / "tree")]
    blobs = BlobStore(tmp_path / "data")
    for item in attached:
        blobs.put(item.data)  # type: ignore[attr-defined]
        blobs.put(item.text_bytes)  # type: ignore[attr-defined]
    for piped in (None, "piped text"):
        head = "\n\n".join(item.block() for item in attached)  # type: ignore[attr-defined]
        sent = compose_prompt("Question?", f"{head}\n\n{piped}" if piped else head)
        rest = after_attachments(sent, attached)  # type: ignore[arg-type]
        records = [attachment_record(item) for item in attached]  # type: ignore[arg-type]
        stored = StoredMessage("user", rest, attachments=records)
        assert user_text(stored, blobs) == sent
    missing: list[str] = []
    assert "a.txt is missing" in user_text(stored, None, missing)
    assert missing == ["a.txt", "tree/"]


# -- PDFs --------------------------------------------------------------------------------


def make_pdf(path: Path, pages: list[str], encrypt: str | None = None) -> Path:
    """A real PDF drawn by reportlab: one line of text per page ("" draws a shape only)."""
    from reportlab.pdfgen import canvas

    drawing = canvas.Canvas(str(path), encrypt=encrypt)
    for text in pages:
        if text:
            drawing.drawString(72, 720, text)
        else:
            drawing.rect(72, 600, 200, 100, fill=1)  # a page with no text layer
        drawing.showPage()
    drawing.save()
    return path


def test_pdf_pages_are_marked(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "r.bin", ["First page.", "", "Third: alpha7 = 119."])
    attached = read(path)  # the name says nothing: the bytes say PDF
    assert attached.kind == "pdf"  # type: ignore[attr-defined]
    assert attached.text == (  # type: ignore[attr-defined]
        "[page 1]\nFirst page.\n\n[page 2]\n(no text on this page)\n\n"
        "[page 3]\nThird: alpha7 = 119."
    )


def test_pdf_refusals_are_one_line(tmp_path: Path) -> None:
    locked = make_pdf(tmp_path / "locked.pdf", ["secret"], encrypt="pw")
    with pytest.raises(AttachmentError, match=r"locked.pdf is an encrypted PDF"):
        read(locked)
    scanned = read(make_pdf(tmp_path / "scan.pdf", ["", ""]))
    # Read, for a model that may see its pages; refused for one shown none of them.
    with pytest.raises(AttachmentError, match=r"no text layer .*none of its 2 pages.*--mmproj"):
        for_model([scanned], ScriptedBackend([]), "auto", notes.append)  # type: ignore[list-item]
    good = make_pdf(tmp_path / "good.pdf", ["text"]).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    (tmp_path / "junk.pdf").write_bytes(b"%PDF-1.4\n" + b"\x13garbage" * 50)
    for name in ("cut.pdf", "junk.pdf"):
        with pytest.raises(AttachmentError) as caught:
            read(tmp_path / name)
        assert "\n" not in caught.value.message and name in caught.value.message


def test_pdf_page_cap(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "long.pdf", ["a", "b", "c"])
    with pytest.raises(AttachmentError, match="3 pages, over the cap of 2"):
        read(path, Limits(pdf_pages=2))


# -- URLs --------------------------------------------------------------------------------


def test_urls_are_fetched_reduced_and_capped(tmp_path: Path) -> None:
    from tests.webserver import web_server

    pdf = make_pdf(tmp_path / "d.pdf", ["Page one text."]).read_bytes()
    with web_server(pdf) as base:
        article = read(f"{base}/article")
        text = article.text  # type: ignore[attr-defined]
        assert article.kind == "url" and "secret word is heron" in text  # type: ignore[attr-defined]
        assert "tracking" not in text and "Cookie" not in text and "Login" not in text
        assert read(f"{base}/plain").text == "caf\u00e9 notes\n"  # type: ignore[attr-defined]
        assert read(f"{base}/doc").text == "[page 1]\nPage one text."  # type: ignore[attr-defined]
        refusals = {
            "/png": "is an image .PNG. whose header cannot be read",
            "/zip": "only HTML, text, JSON and PDF",
            "/missing": "answered 404",
            "/loop": "more than 5 redirects",
            "/flood": "over the cap of 1,000,000 bytes",
            "/stall": "took longer than 1 s",
        }
        limits = Limits(url_bytes=1_000_000, url_seconds=1.0)
        for path, message in refusals.items():
            with pytest.raises(AttachmentError, match=message):
                read(f"{base}{path}", limits)


def test_a_path_pasted_or_dropped_alone_is_recognised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spaced = tmp_path / "my notes.md"
    spaced.write_text("x")
    (tmp_path / "notes").mkdir()
    monkeypatch.chdir(tmp_path)
    assert dropped_path(f"'{spaced}'") == str(spaced)  # GNOME Terminal, iTerm2 quote
    assert dropped_path(f'"{spaced}" ') == str(spaced)
    assert dropped_path(str(spaced).replace(" ", "\\ ")) == str(spaced)  # macOS Terminal
    assert dropped_path("file://" + str(spaced).replace(" ", "%20")) == str(spaced)
    assert dropped_path("./notes") == "./notes"
    for message in (
        "notes",  # a word, even if a folder of that name exists
        f"summarise {spaced}",
        str(spaced),  # unquoted, the space makes it two words
        f"'{tmp_path}/nope.md'",
        f"'{spaced}",
        f"{spaced}\nand more",
        "",
    ):
        assert dropped_path(message) is None, message


def test_a_folder_note_names_the_files_taken_after_took(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha\n")
    (folder / "b.txt").write_text("beta\n")
    (folder / "c.bin").write_bytes(b"\x00\x01\x02\x03")
    notes: list[str] = []
    read_attachment(str(folder), notes.append)
    assert notes[-1] == "t/: took 2 text files (11 bytes): a.txt, b.txt; skipped 1"
    assert notes[0].startswith("t/c.bin: skipped")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_unicode_text_with_a_byte_order_mark_is_text_not_audio(tmp_path: Path, codec: str) -> None:
    text = "Hello, the code word is heron.\n"
    data = ("\ufeff" + text if codec.endswith(("le", "be")) else text).encode(codec)
    assert sniff(data).kind == "text"
    path = tmp_path / "u.txt"
    path.write_bytes(data)
    notes: list[str] = []
    attached = read_attachment(str(path), notes.append)
    assert (attached.kind, attached.text, notes) == ("text", text, [])


def test_counts_in_messages_agree_with_their_nouns(tmp_path: Path) -> None:
    from gptcli.wording import plural

    assert [plural(1, "turn"), plural(2, "turn"), plural(0, "turn")] == [
        "1 turn",
        "2 turns",
        "0 turns",
    ]
    assert plural(3291823, "entry", "entries") == "3,291,823 entries"
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha\n")
    notes: list[str] = []
    read_attachment(str(folder), notes.append)
    assert notes == ["one/: took 1 text file (6 bytes): a.txt; skipped 0"]

"""`-a/--attach` end to end: the installed script, the bundled model, real files and PDFs."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gptcli
from tests.fakeserver import FakeServer, Script

pytestmark = pytest.mark.slow


def _png() -> bytes:
    """A whole (2 x 2) PNG: a header alone is refused as unreadable before any model loads."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (2, 2), (0, 0, 255)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


def test_ask_attaches_a_text_file_with_json_facts(gptcli: Gptcli, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\n")
    result = gptcli("ask", "-a", str(note), "--json", "-t", "0", "-n", "12", "Secret word?")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert "pelican" in record["text"].lower()
    (info,) = record["attachments"]
    assert info["kind"] == "text" and info["name"] == "note.md" and info["bytes"] == 28
    assert 5 < info["tokens"] < record["usage"]["prompt_tokens"]
    assert info["read_s"] >= 0


def test_jsonl_emits_an_attachment_event_before_the_deltas(gptcli: Gptcli, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    result = gptcli("ask", "-a", str(tmp_path / "a.txt"), "--jsonl", "-t", "0", "-n", "3", "Hi")
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds[:3] == ["start", "attachment", "delta"]


def test_an_image_is_refused_before_anything_is_sent_or_saved(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    (tmp_path / "photo.jpg").write_bytes(PNG)
    result = gptcli("ask", "--session", "s", "-a", str(tmp_path / "photo.jpg"), "What is it?")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--mmproj" in result.stderr
    assert "no projector" in result.stderr
    assert not (gptcli.home / "data" / "sessions" / "s.json").exists()


def test_stdin_as_an_attachment_is_sniffed(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-a", "-", "Describe it.", input=PNG)
    assert result.returncode == 2 and "stdin is an image (PNG)" in result.stderr


EMPTY_PATH = "gptcli: error: an empty path cannot be attached (an unset shell variable?)\n"


def test_an_empty_attachment_path_is_refused(gptcli: Gptcli, tmp_path: Path) -> None:
    """``-a ""`` (an unset variable) is not the current directory."""
    (tmp_path / "secret.txt").write_text("not to be sent\n")
    for command in (("ask", "-n", "4"), ("cmd",)):
        result = gptcli(*command, "-a", "", "hi", cwd=tmp_path)
        assert (result.returncode, result.stderr) == (2, EMPTY_PATH), command
        assert "took" not in result.stderr


def test_chat_refuses_an_empty_attachment_path(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.conftest import gptcli_executable
    from tests.terminal import Terminal

    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "chat", "-a", ""], env, cwd=tmp_path)
    try:
        assert term.wait_exit() == 2
        assert EMPTY_PATH.strip() in term.screen_text()
    finally:
        term.close()


def test_a_utf16_file_is_read_as_text_not_audio(gptcli: Gptcli, tmp_path: Path) -> None:
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("The code name is heron.\n".encode("utf-16"))  # with FF FE, the LE mark
    result = gptcli("ask", "-a", str(u16), "--json", "-t", "0", "-n", "12", "Code name?")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["attachments"][0]["kind"] == "text"


def test_folder_lists_what_was_taken_and_skipped(gptcli: Gptcli, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / ".gitignore").write_text("*.log\n")
    (root / "notes.md").write_text("The code name is heron.\n")
    (root / "x.log").write_text("ignored\n")
    (root / "logo.png").write_bytes(PNG)
    result = gptcli("ask", "-a", str(root), "--json", "-t", "0", "-n", "12", "Code name?")
    assert result.returncode == 0, result.stderr
    assert "proj/logo.png: skipped, not text (png)" in result.stderr
    assert "proj/: took 2 text files" in result.stderr
    assert "1 ignored by .gitignore" in result.stderr
    assert json.loads(result.stdout)["attachments"][0]["kind"] == "folder"


def test_an_attachment_too_long_for_the_window_is_refused_or_chunked(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    long = tmp_path / "long.txt"
    long.write_text("The sky is blue and the grass is green today. " * 80)  # ~900 tokens
    refused = gptcli("ask", "--ctx", "512", "-a", str(long), "Summarise.")
    assert refused.returncode == 4 and "--chunked" in refused.stderr
    chunked = gptcli("ask", "--ctx", "512", "--chunked", "-a", str(long), "--json", "-n", "24")
    assert chunked.returncode == 0, chunked.stderr
    assert json.loads(chunked.stdout)["chunked"]["parts"] >= 2


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sessions_keep_attachments_once_and_delete_them(gptcli: Gptcli, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\nqx-zebra-42\n")
    args = ("-t", "0", "-n", "8")
    for session in ("one", "two"):
        first = gptcli("ask", "--session", session, "-a", str(note), *args, "Secret word?")
        assert first.returncode == 0, first.stderr
    again = gptcli("ask", "--session", "one", "--json", *args, "Say it again.")
    assert again.returncode == 0, again.stderr
    # The second turn sees the first one's attachment, rebuilt from the store.
    assert json.loads(again.stdout)["usage"]["prompt_tokens"] > 20
    saved = json.loads((gptcli.home / "data" / "sessions" / "one.json").read_text())
    assert saved["schema"] == 2
    user = saved["messages"][0]
    assert user["content"] == "---\n\nSecret word?"
    (record,) = user["attachments"]
    assert record["kind"] == "text" and record["name"] == "note.md" and record["bytes"] == 40
    blobs = gptcli.home / "data" / "attachments"
    assert (blobs / record["sha256"]).read_bytes() == note.read_bytes()
    assert _mode(blobs) == 0o700 and _mode(blobs / record["sha256"]) == 0o600
    shown = gptcli("sessions", "show", "one")
    assert "attached `note.md` (text, 40 bytes" in shown.stdout
    assert "qx-zebra-42" not in shown.stdout
    exported = gptcli("sessions", "export", "one", "--format", "json")
    assert "note.md" in exported.stdout
    assert gptcli("sessions", "rm", "one").returncode == 0
    assert (blobs / record["sha256"]).exists()  # "two" uses it still
    assert gptcli("sessions", "rm", "two").returncode == 0
    assert not (blobs / record["sha256"]).exists()


def test_a_session_whose_attachment_copy_is_gone_still_opens(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\n")
    assert gptcli("ask", "--session", "s", "-a", str(note), "-n", "4", "Hi").returncode == 0
    for blob in (gptcli.home / "data" / "attachments").iterdir():
        blob.unlink()
    result = gptcli("ask", "--session", "s", "-n", "4", "And now?")
    assert result.returncode == 0, result.stderr
    assert "note.md is missing" in result.stderr


def test_a_pdf_and_a_url_reach_the_model(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_attachments import make_pdf
    from tests.webserver import web_server

    pdf = make_pdf(tmp_path / "report.pdf", ["Intro.", "The budget is 42 euros."])
    result = gptcli("ask", "-a", str(pdf), "--json", "-t", "0", "-n", "16", "What is the budget?")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert "42" in record["text"] and record["attachments"][0]["kind"] == "pdf"
    locked = make_pdf(tmp_path / "locked.pdf", ["x"], encrypt="pw")
    refused = gptcli("ask", "-a", str(locked), "Hi")
    assert refused.returncode == 2 and "encrypted PDF" in refused.stderr
    with web_server() as base:
        fetched = gptcli("ask", "-a", f"{base}/article", "--json", "-t", "0", "-n", "12", "Secret?")
    assert fetched.returncode == 0, fetched.stderr
    assert "heron" in json.loads(fetched.stdout)["text"].lower()


def test_chat_attach_at_path_edit_and_resume(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import answer_after, start

    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\n")
    codes = tmp_path / "codes.txt"
    codes.write_text("The code name is heron.\n")
    term = start(gptcli, "-t", "0", "-n", "24", "--resume", "att", cols=200)
    try:
        term.type_line(f"/attach {note}")
        term.wait_text("(attached note.md: text, 28 bytes")
        term.type_line("What is the secret word?")
        term.wait_prompt(3)
        assert "pelican" in answer_after(term.scrollback(), "secret word?").lower()
        term.send(f"What code name does @{str(codes)[:-5]}")
        term.send("\t")  # completes the path after '@'
        term.wait_text("codes.txt")
        term.type_line(" say?")
        term.wait_prompt(4)
        term.type_line("/edit")
        term.wait_prompt(5)
        term.pump(0.5)
        assert "=== codes.txt" not in term.screen_text()  # the typed text, not the file
        term.type_line("")
        term.wait_prompt(6)
        term.type_line("/attach /no/such/file")
        term.wait_text("file not found: /no/such/file")
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    saved = json.loads((gptcli.home / "data" / "sessions" / "att.json").read_text())
    users = [m for m in saved["messages"] if m["role"] == "user"]
    assert len(users) == 2  # the edited message replaced the one it was made from
    assert users[0]["attachments"][0]["name"] == "note.md"
    assert users[-1]["attachments"][0]["name"] == "codes.txt"  # kept through /edit
    assert users[-1]["content"].startswith("---\n\nWhat code name does @")
    # The note attached in the chat is in the resumed session's prompt.
    again = gptcli(
        "ask", "--session", "att", "--json", "-t", "0", "-n", "24", "What is the secret word?"
    )
    assert "pelican" in json.loads(again.stdout)["text"].lower()


def test_chat_edit_of_a_resumed_turn_keeps_its_attachments(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import start

    codes = tmp_path / "codes.txt"
    codes.write_text("The code name is heron.\n")
    first = gptcli("ask", "--session", "r", "-a", str(codes), "-t", "0", "-n", "6", "Code name?")
    assert first.returncode == 0, first.stderr
    term = start(gptcli, "-t", "0", "-n", "6", "--resume", "r", cols=200)
    try:
        term.type_line("/edit")
        term.wait_prompt(2)
        term.pump(0.5)
        screen = term.screen_text()
        assert "=== codes.txt" not in screen and ">>> Code name?" in screen
        term.type_line(" Answer in one word.")
        term.wait_prompt(3)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    saved = json.loads((gptcli.home / "data" / "sessions" / "r.json").read_text())
    users = [m for m in saved["messages"] if m["role"] == "user"]
    assert len(users) == 1  # a resumed chat goes on from the edited message, as this one did
    assert [a["name"] for a in users[-1]["attachments"]] == ["codes.txt"]
    assert users[-1]["content"].endswith("Code name? Answer in one word.")


def test_chat_offers_a_dropped_path_as_an_attachment(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import start

    note = tmp_path / "my notes.md"
    note.write_text("The secret word is pelican.\n")
    term = start(gptcli, "-t", "0", "-n", "12", "--resume", "drop", cols=200)
    try:
        term.type_line(str(note).replace(" ", "\\ "))  # as a terminal pastes a dropped file
        term.wait_text(f"attach {note}? [Y/n]")
        term.type_line("")
        term.wait_text("(attached my notes.md: text")
        term.wait_prompt(2)
        term.type_line("What is the secret word?")
        term.wait_prompt(3)
        term.type_line(str(note).replace(" ", "\\ "))
        term.wait_for(lambda screen: screen.count("[Y/n]") == 2)
        term.type_line("n")  # no: it goes as a message
        term.wait_prompt(4)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    saved = json.loads((gptcli.home / "data" / "sessions" / "drop.json").read_text())
    users = [m for m in saved["messages"] if m["role"] == "user"]
    assert [a["name"] for a in users[0]["attachments"]] == ["my notes.md"]
    assert users[0]["content"].endswith("What is the secret word?")
    typed = str(note).replace(" ", "\\ ")
    assert users[1]["content"] == typed and not users[1].get("attachments")


def test_batch_items_take_attachments(gptcli: Gptcli, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\n")
    (tmp_path / "photo.png").write_bytes(PNG)
    items = [
        {"id": "a", "prompt": "Secret word?", "attachments": [str(note)]},
        {"id": "b", "prompt": "What is it?", "attachments": [str(tmp_path / "photo.png")]},
        {"id": "c", "prompt": "Hi", "attachments": "note.md"},
    ]
    lines = "".join(json.dumps(item) + "\n" for item in items)
    done = gptcli("batch", "--ordered", "-t", "0", "-n", "12", input=lines, timeout=300)
    assert done.returncode == 1
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert "pelican" in results[0]["text"].lower()
    assert "--mmproj" in results[1]["error"]["message"]
    assert "attachments must be a list" in results[2]["error"]["message"]


def test_cmd_takes_attachments_and_refuses_media(gptcli: Gptcli, tmp_path: Path) -> None:
    # The request is checked where it arrives: what a model makes of it (and of the working
    # folder that the cmd prompt names) is not this test's business.
    server = FakeServer(Script(steps=["ok"]))
    try:
        (tmp_path / "Makefile").write_text("build:\n\tcc -o app main.c\n")
        config = gptcli.home / "config" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'backend = "openai"\nbase_url = "{server.url}"\n')
        done = gptcli("cmd", "-a", str(tmp_path / "Makefile"), "run the build", input=None)
        config.unlink()
    finally:
        server.close()
    assert done.returncode == 0 and done.stdout.strip() == "Hello world", done.stderr
    (body,) = server.script.bodies
    sent = json.dumps(body["messages"])
    assert "cc -o app main.c" in sent and "run the build" in sent
    (tmp_path / "song.flac").write_bytes(b"fLaC\0\0\0\x22")
    refused = gptcli("cmd", "-a", str(tmp_path / "song.flac"), "play it", input=None)
    assert refused.returncode == 2 and "is audio (FLAC)" in refused.stderr


def _users(gptcli: Gptcli, name: str) -> list[dict[str, Any]]:
    saved = json.loads((gptcli.home / "data" / "sessions" / f"{name}.json").read_text())
    return [m for m in saved["messages"] if m["role"] == "user"]


def test_chat_never_queues_a_refused_attachment(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import start

    image = tmp_path / "img.png"
    image.write_bytes(PNG)
    note = tmp_path / "note.md"
    note.write_text("The secret word is pelican.\n")
    term = start(gptcli, "-t", "0", "-n", "6", "--resume", "refused", cols=200)
    try:
        term.type_line(f"/attach {image}")
        term.wait_text("img.png is an image (PNG)")
        term.type_line(str(image))  # dropped on the terminal, answered yes
        term.wait_text(f"attach {image}? [Y/n]")
        term.type_line("y")
        term.wait_for(lambda screen: screen.count("img.png is an image (PNG)") == 2)
        term.type_line(f"what is @{image}")
        term.wait_for(lambda screen: screen.count("img.png is an image (PNG)") == 3)
        term.type_line("/attach")
        term.wait_text("(attached to your next message: nothing)")
        term.type_line(f"/attach {note}")
        term.wait_text("(attached note.md")
        term.type_line("/detach")
        term.wait_text("(dropped note.md)")
        term.type_line(f"/attach {note}")
        term.wait_for(lambda screen: screen.count("(attached note.md") == 2)
        term.type_line("/new")
        term.wait_text("(new conversation; dropped note.md)")
        term.type_line("/attach")
        term.wait_for(lambda screen: screen.count("next message: nothing") == 2)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    # Nothing was sent: no message, and no attachment copied beside the sessions.
    sessions = gptcli.home / "data" / "sessions"
    assert not (sessions / "refused.json").exists() or _users(gptcli, "refused") == []
    attachments = gptcli.home / "data" / "attachments"
    assert not attachments.exists() or not any(attachments.iterdir())


def test_chat_edit_shows_the_message_as_typed_and_attaches_once(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    from tests.test_repl import start

    note = tmp_path / "a.txt"
    note.write_text("hello text\n")
    codes = tmp_path / "codes.txt"
    codes.write_text("The code name is heron.\n")
    term = start(gptcli, "-t", "0", "-n", "6", "--resume", "twice", cols=200)
    try:
        term.type_line(f"/attach {note}")
        term.wait_text("(attached a.txt")
        term.type_line("Summarise")
        term.wait_prompt(3)
        term.type_line("hi")
        term.wait_prompt(4)
        term.type_line("/undo")
        term.wait_text("(dropped the last exchange)")
        term.type_line("/edit")
        term.wait_prompt(6)
        term.pump(0.5)
        screen = term.screen_text()
        assert "=== a.txt" not in screen and ">>> Summarise" in screen  # as typed
        term.type_line("")
        term.wait_prompt(7)
        term.type_line(f"What code name does @{codes} say?")
        term.wait_prompt(8)
        for count in (9, 11):
            term.type_line("/edit")
            term.wait_prompt(count)
            term.pump(0.5)
            term.type_line("")
            term.wait_prompt(count + 1)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    users = _users(gptcli, "twice")
    assert [[a["name"] for a in u["attachments"]] for u in users] == [
        ["a.txt"],
        ["codes.txt"],
    ]
    assert users[0]["content"] == "---\n\nSummarise"
    assert users[1]["content"] == f"---\n\nWhat code name does @{codes} say?"


def test_chat_edit_after_undo_in_a_resumed_chat(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import start

    codes = tmp_path / "codes.txt"
    codes.write_text("The code name is heron.\n")
    first = gptcli("ask", "--session", "ru", "-a", str(codes), "-t", "0", "-n", "6", "Code name?")
    assert first.returncode == 0, first.stderr
    second = gptcli("ask", "--session", "ru", "-t", "0", "-n", "6", "Thanks")
    assert second.returncode == 0, second.stderr
    term = start(gptcli, "-t", "0", "-n", "6", "--resume", "ru", cols=200)
    try:
        term.type_line("/undo")
        term.wait_text("(dropped the last exchange)")
        term.type_line("/edit")
        term.wait_prompt(3)
        term.pump(0.5)
        screen = term.screen_text()
        assert "=== codes.txt" not in screen and ">>> Code name?" in screen
        term.type_line("")
        term.wait_prompt(4)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    users = _users(gptcli, "ru")
    assert len(users) == 1
    assert [a["name"] for a in users[0]["attachments"]] == ["codes.txt"]
    assert users[0]["content"] == "---\n\nCode name?"


def test_chat_a_cancelled_edit_keeps_the_exchange(gptcli: Gptcli, tmp_path: Path) -> None:
    from tests.test_repl import start

    note = tmp_path / "a.txt"
    note.write_text("hello text\n")
    term = start(gptcli, "-t", "0", "-n", "6", "--resume", "kept", cols=200)
    try:
        term.type_line(f"/attach {note}")
        term.wait_text("(attached a.txt")
        term.type_line("hi there")
        term.wait_prompt(3)
        term.type_line("/edit")
        term.wait_prompt(4)
        term.pump(0.5)
        term.ctrl("c")
        term.wait_text("(edit cancelled; the last exchange is kept)")
        assert len(_users(gptcli, "kept")) == 1  # in the session file too
        term.type_line("/retry")
        term.wait_prompt(6)
        assert "nothing to retry" not in term.screen_text()
        term.type_line("/edit")
        term.wait_prompt(7)
        term.pump(0.5)
        assert ">>> hi there" in term.screen_text()
        term.type_line("")
        term.wait_prompt(8)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    users = _users(gptcli, "kept")
    assert len(users) == 1
    assert [a["name"] for a in users[0]["attachments"]] == ["a.txt"]
    assert users[0]["content"] == "---\n\nhi there"

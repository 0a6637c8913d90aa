"""Images for the bundled model through a tiny random-weight projector (tests/mmproj.py).

The projector proves the pipeline, not the quality: an image is encoded, its tokens
advance the positions, two images change the greedy answer, a session's snapshot
resumes a turn that holds one. Encoding runs on one thread (two threads on a busy
2-core machine made 16 tokens take tens of seconds).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gptcli
from tests.fakeserver import FakeServer, Script
from tests.mmproj import ProjectorShape, write_projector

FAST = ("-t", "0", "-n", "8", "--threads", "1", "--seed", "1")


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A projector for the bundled model, one for another model's width, and two images."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    gradient = np.zeros((64, 64, 3), np.uint8)
    gradient[..., 0] = np.arange(64)[None, :] * 4
    gradient[..., 1] = np.arange(64)[:, None] * 4
    Image.new("RGB", (64, 64), (255, 0, 0)).save(root / "red.png")
    Image.fromarray(gradient).save(root / "gradient.png")
    return {
        "mmproj": write_projector(root / "mmproj-test.gguf"),
        "narrow": write_projector(root / "narrow.gguf", ProjectorShape(width=512)),
        "red": root / "red.png",
        "gradient": root / "gradient.png",
    }


def _ask(gptcli: Gptcli, *args: str) -> dict[str, Any]:
    done = gptcli("ask", *FAST, "--json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_an_image_is_encoded_and_its_tokens_take_positions(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    mmproj = str(media["mmproj"])
    plain = _ask(gptcli, "--mmproj", mmproj, "What is it?")
    seen = _ask(gptcli, "--mmproj", mmproj, "-a", str(media["red"]), "What is it?")
    (attached,) = seen["attachments"]
    assert attached["kind"] == "image" and attached["bytes"] == media["red"].stat().st_size
    assert attached["encode_s"] >= 0
    # 16 image tokens (64 x 64 pixels, 16-pixel patches) beside the header naming the file
    assert attached["tokens"] >= 16
    grown = seen["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"]
    assert grown >= attached["tokens"] and grown - attached["tokens"] < 8


def test_two_images_give_different_answers_the_same_image_the_same(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    mmproj = str(media["mmproj"])
    texts = [
        _ask(gptcli, "--mmproj", mmproj, "-a", str(media[name]), "Describe it.")["text"]
        for name in ("red", "gradient", "red")
    ]
    assert texts[0] != texts[1]
    assert texts[0] == texts[2]


def test_a_session_with_an_image_resumes_from_its_snapshot(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    mmproj = str(media["mmproj"])
    first = _ask(gptcli, "--mmproj", mmproj, "--session", "s", "-a", str(media["red"]), "Hi")
    again = _ask(gptcli, "--mmproj", mmproj, "--session", "s", "And now?")
    # The whole first turn, image included, came from the snapshot.
    assert again["timings"]["cached_prompt_tokens"] >= first["usage"]["prompt_tokens"]
    shown = gptcli("sessions", "show", "s")
    assert "attached `red.png` (image, " in shown.stdout
    blobs = list((gptcli.home / "data" / "attachments").glob("[0-9a-f]*"))
    assert [b.read_bytes() for b in blobs] == [media["red"].read_bytes()]
    assert all(os.stat(b).st_mode & 0o077 == 0 for b in blobs)


def test_prefix_reuse_stops_where_a_different_image_starts(
    media: dict[str, Path], bundled_model: Path
) -> None:
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Finished, Message, TextDelta
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.media import MediaItem, media_marker

    options = LoadOptions(bundled_model, threads=1, extra_buffers=False, mmproj=media["mmproj"])
    backend = LlamaBackend(options)
    sampling = SamplingOptions(temperature=0.0, max_tokens=6, seed=1)

    def messages(name: str) -> list[Message]:
        # The same text around both: only the image differs.
        item = MediaItem("image", "png", "photo.png", media[name].read_bytes())
        return [Message("user", f"=== photo.png ===\n{media_marker(item)}\n\nWhat is it?")]

    def answer(name: str) -> tuple[str, int]:
        text, cached = "", -1
        for event in backend.stream(messages(name), sampling, Cancellation()):
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, Finished):
                cached = event.timings.cached_tokens
        return text, cached

    try:
        image_at = next(i for i, t in enumerate(backend.prompt_tokens(messages("red"))) if t < 0)
        red, _ = answer("red")
        gradient, cached = answer("gradient")
        assert cached == image_at  # the text before the image, not one cell of it
        again, cached = answer("red")
        assert cached == image_at and again == red != gradient
        assert answer("red")[1] > image_at + 16  # the same image is kept whole
    finally:
        backend.close()


def test_a_projector_beside_the_model_is_found(
    gptcli: Gptcli, media: dict[str, Path], bundled_model: Path, tmp_path: Path
) -> None:
    (tmp_path / bundled_model.name).symlink_to(bundled_model)
    (tmp_path / "mmproj-smollm2.gguf").symlink_to(media["mmproj"])
    model = str(tmp_path / bundled_model.name)
    result = _ask(gptcli, "-m", model, "-a", str(media["red"]), "What is it?")
    assert result["attachments"][0]["kind"] == "image"
    info = gptcli("models", "info", model, "--json")
    facts = json.loads(info.stdout)
    assert facts["vision"] is True and facts["image_tokens"] == 16
    assert facts["projector"].endswith("mmproj-smollm2.gguf")


def test_a_projector_for_another_model_is_one_line_exit_2(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    done = gptcli("ask", *FAST, "--mmproj", str(media["narrow"]), "-a", str(media["red"]), "Hi")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "width of 512" in done.stderr and "576" in done.stderr


def test_a_projector_key_of_the_wrong_type_is_refused_before_clip_reads_it(
    gptcli: Gptcli, media: dict[str, Path], tmp_path: Path
) -> None:
    import gguf

    bad = tmp_path / "int32.gguf"
    writer = gguf.GGUFWriter(str(bad), "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_int32("clip.vision.block_count", 2)  # clip.cpp reads a uint32 and aborts
    writer.add_tensor("mm.2.weight", __import__("numpy").zeros((576, 8), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    done = gptcli("ask", *FAST, "--mmproj", str(bad), "Hi")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "'clip.vision.block_count' has GGUF type 5" in done.stderr


def test_a_server_gets_content_parts_and_its_refusal_is_one_line(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    server = FakeServer(Script(steps=["ok", "no-vision"]))
    remote = ("--backend", "openai", "--base-url", server.url, "-m", "fake")
    try:
        done = gptcli("ask", *remote, "-a", str(media["red"]), "What is it?")
        refused = gptcli("ask", *remote, "-a", str(media["red"]), "What is it?")
        plain = gptcli("ask", *remote, "Hi")
    finally:
        server.close()
    assert done.returncode == 0 and done.stdout.strip() == "Hello world", done.stderr
    parts = server.script.bodies[0]["messages"][-1]["content"]
    kinds = [part["type"] for part in parts]
    assert kinds == ["text", "image_url", "text"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == media["red"].read_bytes()
    assert "What is it?" in parts[2]["text"]
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "takes no images" in refused.stderr
    # Without media the same answer is the server's error, reported as before (exit 6).
    assert plain.returncode == 6 and "takes no images" not in plain.stderr
    assert isinstance(server.script.bodies[-1]["messages"][-1]["content"], str)


def test_chat_attaches_an_image_and_resumes_it_from_the_snapshot(
    gptcli: Gptcli, media: dict[str, Path]
) -> None:
    """In a real terminal: /attach an image, ask, /show says what the model takes; the
    session resumed in a new chat restores the turn's cells, image included."""
    import re

    from tests.test_repl import start

    args = ("--mmproj", str(media["mmproj"]), *FAST, "--resume", "pic")
    term = start(gptcli, *args, cols=200)
    try:
        term.type_line("/show")
        term.wait_text("vision, 16 tokens per image")
        term.type_line(f"/attach {media['red']}")
        term.wait_text("(attached red.png: image, ")
        term.type_line("What is it?")
        term.wait_prompt(4)
        term.type_line("/stats")
        first = term.wait_for(lambda s: "reused from cache" in s)
        evaluated = int(re.findall(r"\((\d+) prompt tokens evaluated", first)[-1])
        assert evaluated > 16  # the image's tokens and the text around them
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    term = start(gptcli, *args, cols=200)
    try:
        restored = term.wait_text("tokens need no processing)")
        assert int(re.findall(r"restored the saved state: (\d+) tokens", restored)[-1]) > evaluated
        term.type_line("And now?")
        term.wait_prompt(2)
        term.type_line("/stats")
        second = term.wait_for(lambda s: s.count("reused from cache") >= 1)
        assert int(re.findall(r"(\d+) reused from cache", second)[-1]) > evaluated
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    saved = json.loads((gptcli.home / "data" / "sessions" / "pic.json").read_text())
    users = [m for m in saved["messages"] if m["role"] == "user"]
    assert [a["name"] for a in users[0]["attachments"]] == ["red.png"]


def test_batch_records_each_items_attachments_with_their_encode_time(
    gptcli: Gptcli, media: dict[str, Path], tmp_path: Path
) -> None:
    from tests.test_attachments import make_pdf

    pdf = str(make_pdf(tmp_path / "report.pdf", ["Intro.", ""]))
    items = [
        {"id": "img", "prompt": "What is it?", "attachments": [str(media["red"])]},
        {"id": "pages", "prompt": "Page 2?", "attachments": [pdf], "pdf_pages": "images"},
        {"id": "text", "prompt": "Page 2?", "attachments": [pdf], "pdf_pages": "text"},
    ]
    lines = "".join(json.dumps(item) + "\n" for item in items)
    args = ("--ordered", "--mmproj", str(media["mmproj"]), *FAST)
    done = gptcli("batch", *args, input=lines, timeout=300)
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r["attachments"] for r in map(json.loads, done.stdout.splitlines())}
    (image,) = records["img"]
    assert image["kind"] == "image" and image["tokens"] >= 16 and image["encode_s"] >= 0
    (pages,) = records["pages"]
    assert pages["page_images"] == [1, 2] and pages["encode_s"] >= 0 and pages["tokens"] >= 32
    (text,) = records["text"]
    assert text["kind"] == "pdf" and "encode_s" not in text and text["tokens"] < pages["tokens"]


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An audio projector (whisper-style, ``qwen2a``) and one second of a 440 Hz sine."""
    import wave

    import numpy as np

    from tests.mmproj import write_audio_projector

    root = tmp_path_factory.mktemp("sound")
    rate = 16000
    samples = np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 0.3 * 32767
    with wave.open(str(root / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype(np.int16).tobytes())
    return {"mmproj": write_audio_projector(root / "mmproj-audio.gguf"), "tone": root / "tone.wav"}


def test_a_sound_is_encoded_and_its_tokens_counted(
    gptcli: Gptcli, sound: dict[str, Path], tmp_path: Path
) -> None:
    """The first audio projector run here: mtmd computes the mel filters and pads a sound
    to whisper's 30 s window, 1,500 positions pooled to 750 tokens."""
    from tests.test_attachments import make_pdf

    mmproj = str(sound["mmproj"])
    done = gptcli(
        "ask", *FAST, "-n", "1", "--json", "--mmproj", mmproj, "-a", str(sound["tone"]), "Hi"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (attached,) = result["attachments"]
    assert attached["kind"] == "audio" and attached["encode_s"] >= 0
    assert attached["tokens"] >= 750 and result["usage"]["prompt_tokens"] > attached["tokens"]
    # The projector takes no images: a PDF's pages cannot be shown to it.
    pdf = str(make_pdf(tmp_path / "p.pdf", ["Intro."]))
    refused = gptcli("ask", *FAST, "--mmproj", mmproj, "--pdf-pages", "images", "-a", pdf, "Hi")
    assert refused.returncode == 2 and "projector takes no images" in refused.stderr


def _served(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The server's answer to ``body`` whole, not streamed: llama-cpp-python's server says
    its usage only then (a stream ends without it, and gptcli reports its own estimate)."""
    import urllib.request

    from tests.timing import patience

    once = {key: value for key, value in body.items() if key != "stream_options"}
    once["stream"] = False
    request = urllib.request.Request(
        f"{url}/chat/completions",
        json.dumps(once).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=patience(60)) as answer:
        result: dict[str, Any] = json.load(answer)
    return result


@pytest.mark.slow
def test_llama_cpp_pythons_server_encodes_the_image_gptcli_sends(
    gptcli: Gptcli, media: dict[str, Path], bundled_model: Path, tmp_path: Path
) -> None:
    """The same pair served by llama-cpp-python's own server (chat format llava-1-5, libmtmd
    underneath): gptcli's request is encoded there, image and all."""
    from tests.llama_server import LlamaServer

    ask = ("-t", "0", "-n", "8", "--json", "Describe the picture.")
    # The request as gptcli sends it, caught by a fake server first.
    fake = FakeServer(Script(steps=["ok"]))
    try:
        caught = gptcli("ask", "--base-url", fake.url, "-m", "smol", "-a", str(media["red"]), *ask)
    finally:
        fake.close()
    assert caught.returncode == 0, caught.stderr
    (body,) = fake.script.bodies
    server = LlamaServer(bundled_model, tmp_path / "server.log", projector=media["mmproj"], ctx=512)
    try:
        answers: dict[str, str] = {}
        for name in ("red", "gradient"):
            done = gptcli("ask", "--base-url", server.url, "-a", str(media[name]), *ask)
            assert done.returncode == 0, done.stderr + server.log.read_text("latin-1")[-2000:]
            answers[name] = json.loads(done.stdout)["text"]
        seen = _served(server.url, body)
        message = body["messages"][-1]
        parts = [part for part in message["content"] if part["type"] != "image_url"]
        blind = {**body, "messages": [*body["messages"][:-1], {**message, "content": parts}]}
        unseen = _served(server.url, blind)
    finally:
        server.close()
    # The server's own count: the image's 16 tokens (64 x 64 pixels, 16-pixel patches) more
    # than the same request without it (67 and 51 here: its template puts the image between
    # "USER: " and the text, which tokenizes the same with or without it).
    grown = seen["usage"]["prompt_tokens"] - unseen["usage"]["prompt_tokens"]
    assert grown == ProjectorShape().patches, (seen["usage"], unseen["usage"])
    # What gptcli printed is the server's greedy answer to that request, and another image
    # changes it.
    assert seen["choices"][0]["message"]["content"] == answers["red"]
    assert answers["red"] != answers["gradient"]

"""Inputs far larger than the context: refused or summarised in bounded memory and time."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptcli.answering.inputs import BLOCK, decode_input, text_blocks
from gptcli.conversation.context import read_within
from gptcli.conversation.splitting import split_text
from gptcli.engine.base import Cancellation
from gptcli.errors import ContextOverflowError, UsageError
from tests.conftest import Gptcli, gptcli_executable
from tests.test_context import WindowBackend
from tests.timing import patience

LINE = b"The quick brown fox jumps over the lazy dog near the river bank today.\n"
HUGE = 200 * 1000 * 1000


def blocks_of(data: bytes) -> tuple[str, list[str]]:
    warnings: list[str] = []
    text = "".join(t for t, _ in text_blocks(io.BytesIO(data), "stdin", warnings.append))
    return text, warnings


@given(
    st.lists(st.sampled_from(["a", "é", "€", "😀", "\n", "\xff", "\xc3", "\ufeff"]), max_size=60),
    st.integers(0, 3),
)
def test_block_decoding_is_the_whole_decoding(pieces: list[str], shift: int) -> None:
    raw = "".join(pieces).encode("utf-8", errors="surrogateescape")
    raw = raw.replace(b"\xc3\xbf", b"\xff").replace(b"\xc3\x83", b"\xc3")
    data = b"x" * (BLOCK - shift) + raw  # characters and bad bytes across the block boundary
    whole = decode_input(data)
    text, warnings = blocks_of(data)
    assert text == whole.text
    assert warnings == ([whole.warning] if whole.warning else [])


def test_a_character_split_across_blocks_and_a_nul_after_the_first_block() -> None:
    data = b"a" * (BLOCK - 1) + "é".encode() + b" tail"
    text, warnings = blocks_of(data)
    assert text == "a" * (BLOCK - 1) + "é tail"
    assert warnings == []
    with pytest.raises(UsageError, match=f"NUL byte at offset {BLOCK}:"):
        blocks_of(b"a" * BLOCK + b"\x00")


class BoundedBackend(WindowBackend):
    """One token per word, at most 20 bytes of text per token."""

    def token_bytes(self) -> int | None:
        return 20


def endless(consumed: list[int]) -> Iterator[str]:
    while True:
        consumed.append(1)
        yield "word " * 1000


@pytest.mark.parametrize("backend", [BoundedBackend([]), WindowBackend([])])
def test_an_endless_input_is_refused_after_reading_a_bounded_part(backend: WindowBackend) -> None:
    consumed: list[int] = []
    with pytest.raises(ContextOverflowError, match="the input is at least"):
        read_within(endless(consumed), backend, 90, Cancellation())
    assert len(consumed) <= 2


def test_input_that_fits_is_read_whole() -> None:
    text = read_within(iter(["a b ", "c d"]), BoundedBackend([]), 90, Cancellation())
    assert text == "a b c d"


def test_streamed_parts_cover_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    from gptcli.conversation import splitting

    monkeypatch.setattr(splitting, "STREAM_WINDOW", 500)
    document = "\n\n".join(f"Paragraph {n} " + "filler " * 15 for n in range(60))
    count = len
    splitter = splitting.StreamSplit(lambda t: len(t.split()), 60, 0)
    blocks = [document[i : i + 97] for i in range(0, len(document), 97)]
    parts = list(splitter.parts(blocks, Cancellation()))
    whole = split_text(document, lambda t: len(t.split()), 60)
    assert " ".join(parts).split() == " ".join(whole).split()
    assert all(len(p.split()) <= 60 for p in parts)
    assert count(parts) > 10


def _peak_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(child: subprocess.Popen[bytes], timeout: float) -> int:
    """The child's peak resident memory (KiB), polled until it exits."""
    peak, deadline = 0, time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _peak_kib(child.pid))
        time.sleep(0.05)
    return peak


def _feed(sink: io.BufferedWriter | int, size: int) -> None:
    block = LINE * 1000
    try:
        with open(sink, "wb") if isinstance(sink, int | str) else sink as out:
            for _ in range(size // len(block)):
                out.write(block)
    except (BrokenPipeError, OSError):
        pass


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stdin", "file"])
def test_200_mb_is_refused_in_bounded_memory(gptcli: Gptcli, tmp_path: Path, how: str) -> None:
    args = [gptcli_executable(), "ask", "Summarise"]
    fifo = tmp_path / "huge.txt"
    if how == "file":
        os.mkfifo(fifo)
        args += ["--file", str(fifo)]
    started = time.monotonic()
    child = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if how == "stdin" else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=gptcli.env,
    )
    sink = child.stdin if how == "stdin" else str(fifo)
    writer = threading.Thread(target=_feed, args=(sink, HUGE), daemon=True)
    writer.start()
    peak = _watch(child, 60)
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    child.wait(timeout=10)
    print(f"{how}: refused in {time.monotonic() - started:.1f} s, peak RSS {peak // 1024} MiB")
    assert child.returncode == 4, err
    assert b"the input is at least" in err and b"--chunked" in err
    assert out == b""
    assert 0 < peak <= 500 * 1024


@pytest.mark.slow
def test_nul_after_the_first_block_of_stdin_is_refused(gptcli: Gptcli) -> None:
    result = gptcli("ask", "Summarise", input=b"a" * BLOCK + b"\x00")
    assert result.returncode == 2
    assert f"stdin contains a NUL byte at offset {BLOCK}:" in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_chunked_summary_of_a_large_input(gptcli: Gptcli, tmp_path: Path) -> None:
    document = tmp_path / "large.txt"
    document.write_bytes(LINE * 70_000)  # 5 MB
    with document.open("rb") as handle:
        child = subprocess.Popen(
            [gptcli_executable(), "ask", "--chunked", "--debug", "--ctx", "512", "Summarise"],
            stdin=handle,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=gptcli.env,
        )
    assert child.stderr is not None
    peak = 0
    for line in child.stderr:
        peak = max(peak, _peak_kib(child.pid))
        if line.startswith(b"gptcli: note: summarising part 2"):
            assert b"of ~" in line and b"left)" in line  # parts, the estimate and an ETA
            break
    time.sleep(0.5)
    peak = max(peak, _peak_kib(child.pid))
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    took = time.monotonic() - sent
    print(f"Ctrl-C ended it in {took:.2f} s, peak RSS {peak // 1024} MiB")
    assert child.returncode == 130
    assert took < patience(2.0)  # 2 s on an idle machine
    assert b"Traceback" not in err
    assert 0 < peak <= 1024 * 1024

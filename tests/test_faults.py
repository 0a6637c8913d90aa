"""Faults in the middle of things: Ctrl-C while the chat starts, a terminal resized while an
answer streams, an engine that fails mid-answer, and many model switches in one chat."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptcli.store.index import INDEX_FILE
from tests.conftest import WORKER_THREADS, Gptcli, gptcli_executable
from tests.depth import rounds
from tests.fakeserver import FakeServer, Script
from tests.terminal import Terminal
from tests.test_repl import answer_after, start
from tests.timing import blocked_reading, patience, wait_until

MiB = 1024 * 1024
ROMEO = "Who wrote Romeo and Juliet?"
FRANCE = "Name the capital city of France."


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def outcome(term: Terminal, timeout: float = 30) -> str:
    """'exit N', 'signal N' or 'prompt', whichever the chat reaches first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        term.pump(0.05)
        if not term.child.isalive():
            term.pump(0.1)
            term.child.close()
            if term.child.exitstatus is not None:
                return f"exit {term.child.exitstatus}"
            return f"signal {term.child.signalstatus}"
        if term.prompts() >= 1 and term.at_prompt():
            return "prompt"
    raise AssertionError(f"neither exit nor prompt; screen:\n{term.screen_text()}")


def test_ctrl_c_at_any_moment_of_chat_start_exits_cleanly(gptcli: Gptcli) -> None:
    """Ctrl-C swept across start-up: imports, model validation, loading, context creation."""
    env = {**gptcli.env, "TERM": "xterm-256color"}
    argv = [gptcli_executable(), "chat", "--no-history"]
    started = time.monotonic()
    term = Terminal(argv, env)
    try:
        assert outcome(term) == "prompt"
        ready = time.monotonic() - started
    finally:
        term.close()
    seen: dict[str, int] = {}
    for step in range(1, 13):
        term = Terminal(argv, env)
        try:
            time.sleep(ready * step / 13)
            term.ctrl("c")
            reached = outcome(term)
            if reached == "prompt":  # the prompt took the key: the hint, then a clean exit
                term.ctrl("d")
                assert term.wait_exit() == 0
            raw = term.raw.decode("utf-8", errors="replace")
        finally:
            term.close()
        assert "Traceback" not in raw, raw
        assert reached in ("exit 130", "prompt"), (step, reached, raw)
        seen[reached] = seen.get(reached, 0) + 1
    assert seen.get("exit 130", 0) >= 3, seen  # the sweep really interrupted start-up


def test_interrupted_model_load_raises_keyboard_interrupt(bundled_model: Path) -> None:
    """The engine's load-progress callback stops llama.cpp's loader when Ctrl-C arrives."""
    from gptcli.engine.base import Cancellation
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(KeyboardInterrupt):
        LlamaBackend(
            LoadOptions(bundled_model, threads=WORKER_THREADS, extra_buffers=False), cancel
        )


def test_terminal_resized_while_an_answer_streams(gptcli: Gptcli) -> None:
    """Wider mid-answer, narrower at the prompt: every word shown once, wrapped at the new width."""
    first = "Write a long story about a brave knight and a dragon."
    second = "Write a long story about a lighthouse keeper."
    args = ("-t", "0", "--seed", "3", "-n", "200")
    expected = [gptcli("ask", "--plain", *args, prompt).stdout for prompt in (first, second)]
    term = start(gptcli, *args, rows=20, cols=60)
    try:
        term.type_line(first)
        term.wait_for(lambda screen: first in screen and len(words(screen.split(first)[1])) > 15)
        term.child.setwinsize(20, 100)
        term.screen.resize(20, 100)
        term.wait_prompt(2, timeout=90)
        shown_first = answer_after(term.scrollback(), first)
        term.type_line("/new")
        term.wait_prompt(3)
        term.child.setwinsize(20, 50)
        term.screen.resize(20, 50)
        term.pump(0.3)
        term.type_line(second)
        term.wait_prompt(4, timeout=90)
        shown_second = answer_after(term.scrollback(), second)
        raw = term.raw.decode("utf-8", errors="replace")
    finally:
        term.close()
    assert "Traceback" not in raw
    for shown, text in ((shown_first, expected[0]), (shown_second, expected[1])):
        shown = re.sub(r"\(answer cut at \d+ tokens\)", "", shown)
        assert len(words(text)) > 80
        assert words(shown) == words(text)
    assert max(len(line) for line in shown_second.split("\n")) <= 50


def test_engine_failure_mid_answer_leaves_a_sound_engine(bundled_model: Path) -> None:
    """llama_decode failing in the middle of an answer: an error, the partial answer kept,
    and the next turn exactly what a fresh engine answers for the same conversation."""
    from gptcli.config import SamplingOptions
    from gptcli.conversation.chat import Conversation, Reply
    from gptcli.engine.base import Cancellation
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.errors import GptcliError

    options = SamplingOptions(temperature=0, max_tokens=24)
    backend = LlamaBackend(LoadOptions(bundled_model, threads=WORKER_THREADS, extra_buffers=False))
    conversation = Conversation()
    working = backend.scheduler._llama_decode  # how each step is decoded
    calls = 0

    def failing(ctx: object, batch: object) -> int:
        nonlocal calls
        calls += 1
        return -3 if calls == 5 else int(working(ctx, batch))

    setattr(backend.scheduler, "_llama_decode", failing)  # noqa: B010 - on one instance
    reply = Reply()
    with pytest.raises(GptcliError, match="failed while generating"):
        for _ in conversation.send(
            "Who wrote Romeo and Juliet?", backend, options, Cancellation(), reply
        ):
            pass
    setattr(backend.scheduler, "_llama_decode", working)  # noqa: B010
    assert reply.text and conversation.messages[-1].content == reply.text
    after = Reply()
    for _ in conversation.send(
        "Name the capital city of France.", backend, options, Cancellation(), after
    ):
        pass
    backend.close()

    fresh = LlamaBackend(LoadOptions(bundled_model, threads=WORKER_THREADS, extra_buffers=False))
    replay = Conversation(messages=conversation.messages[:-1])
    again = Reply()
    for _ in replay.regenerate(fresh, options, Cancellation(), again):
        pass
    fresh.close()
    assert after.text
    assert after.text == again.text


@pytest.fixture
def cutting_server() -> Iterator[FakeServer]:
    server = FakeServer(Script(steps=["cut", "ok"]))
    yield server
    server.close()


def test_chat_survives_a_backend_failure_mid_answer(
    gptcli: Gptcli, cutting_server: FakeServer
) -> None:
    """A server that cuts the first answer: the chat says so, keeps the part, and goes on."""
    term = start(gptcli, "--base-url", cutting_server.url, "-m", "fake")
    try:
        term.type_line("first question")
        screen = term.wait_prompt(2, timeout=30)
        assert "Hello wor" in screen
        assert "cut the stream in the middle" in screen
        term.type_line("second question")
        screen = term.wait_prompt(3, timeout=30)
        raw = term.raw.decode("utf-8", errors="replace")
    finally:
        term.close()
    assert "Hello world" in answer_after(screen.split("\n"), "second question")
    assert "Traceback" not in raw
    assert len(cutting_server.script.requests) == 2


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_many_model_switches_do_not_grow_memory(gptcli: Gptcli, bundled_model: Path) -> None:
    """`/model` switches in one chat (6, 12 with GPTCLI_DEEP_TESTS=1), each with the same
    short exchange: the memory of every replaced model (weights, KV cache, compute buffers)
    goes back to the system. The model file alone is 92 MiB, against a limit of 6."""
    switches = rounds(6, 12)
    term = start(gptcli, "-t", "0", "-n", "8", "--no-history")
    sizes: list[int] = []
    try:
        for index in range(switches):
            term.type_line("/new")
            term.wait_prompt(2 + 3 * index)
            term.type_line(f"/model {'smollm2' if index % 2 else bundled_model}")
            term.wait_prompt(3 + 3 * index, timeout=60)
            term.type_line(FRANCE)
            term.wait_prompt(4 + 3 * index, timeout=60)
            sizes.append(rss(term.child.pid))
        screen = "\n".join(term.scrollback())
        term.ctrl("d")
        assert term.wait_exit() == 0  # and no crash at exit after all those switches
    finally:
        term.close()
    assert screen.count("(now using") == switches
    growth = max(sizes[2:]) - sizes[1]
    assert growth < 6 * MiB, [s // MiB for s in sizes]


def colour_codes(raw: bytes) -> list[bytes]:
    """SGR sequences that set a colour (bold, reverse and resets are not colours)."""
    found = []
    for params in re.findall(rb"\x1b\[([0-9;]*)m", raw):
        codes = [int(p) for p in params.split(b";") if p]
        if any(30 <= c <= 49 or 90 <= c <= 107 for c in codes):
            found.append(params)
    return found


@pytest.mark.parametrize(("term", "extra"), [("dumb", {}), ("xterm-256color", {"NO_COLOR": "1"})])
def test_dumb_terminal_and_no_color_chat(gptcli: Gptcli, term: str, extra: dict[str, str]) -> None:
    env = {**gptcli.env, "TERM": term, **extra}
    terminal = Terminal([gptcli_executable(), "chat", "-t", "0", "-n", "30", "--no-history"], env)
    try:
        terminal.wait_prompt(1)
        terminal.type_line(FRANCE)
        screen = terminal.wait_prompt(2, timeout=60)
        terminal.ctrl("d")
        assert terminal.wait_exit() == 0
    finally:
        terminal.close()
    assert "Paris" in answer_after(screen.split("\n"), FRANCE)
    assert colour_codes(terminal.raw) == []
    if term == "dumb":
        assert re.findall(rb"\x1b\[[0-9;]*m", terminal.raw) == []


def test_colour_is_used_on_a_normal_terminal(gptcli: Gptcli) -> None:
    """The check above can fail: the same chat on xterm without NO_COLOR does use colour."""
    env = {**gptcli.env, "TERM": "xterm-256color"}
    terminal = Terminal([gptcli_executable(), "chat", "-t", "0", "-n", "30", "--no-history"], env)
    try:
        terminal.wait_prompt(1)
        terminal.type_line("Write a Python function that adds two numbers.")
        terminal.wait_prompt(2, timeout=60)
    finally:
        terminal.close()
    assert colour_codes(terminal.raw)


def shell(gptcli: Gptcli, redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = " ".join(shlex.quote(a) for a in [gptcli_executable(), *args])
    return subprocess.run(
        ["bash", "-c", f"exec {command} {redirect}"],
        env=gptcli.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_closed_stdout_and_stderr(gptcli: Gptcli) -> None:
    """`>&-` leaves Python without sys.stdout: one line, exit 1 (it was an internal error
    and a traceback). `2>&-`: the answer still comes, and messages never land in stdout."""
    closed_out = shell(gptcli, ">&-", "ask", "-t", "0", "-n", "8", FRANCE)
    assert closed_out.returncode == 1
    assert closed_out.stderr == "gptcli: error: standard output is closed; nothing could be shown\n"
    closed_err = shell(gptcli, "2>&-", "ask", "-t", "0", "-n", "16", FRANCE)
    assert closed_err.returncode == 0
    assert "Paris" in closed_err.stdout
    usage = shell(gptcli, "2>&-", "ask", "--no-such-option")
    assert usage.returncode == 2
    assert usage.stdout == ""


def test_ctrl_c_while_waiting_for_a_stdin_that_never_closes(gptcli: Gptcli) -> None:
    child = subprocess.Popen(
        [gptcli_executable(), "ask", "summarise"],
        env=gptcli.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None
        child.stdin.write(b"some text, and the writer never closes the pipe\n")
        child.stdin.flush()
        wait_until(lambda: blocked_reading(child.pid), 60, "gptcli to wait for more stdin")
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=patience(10))
        assert time.monotonic() - started < patience(2)
    finally:
        child.kill()
    assert child.returncode == 130
    assert out == b""
    assert b"Traceback" not in err


def test_a_full_disk_while_saving_keeps_the_old_session(gptcli: Gptcli) -> None:
    """A write limit (RLIMIT_FSIZE: writes fail with EFBIG, as with a full disk) lets the
    first turn be saved but not the second: a warning, the answer anyway, the old file
    byte for byte, no temporary file left behind."""
    import resource

    first = gptcli("ask", "-t", "0", "-n", "12", "--session", "s", FRANCE)
    assert first.returncode == 0
    sessions = gptcli.home / "data" / "sessions"
    saved = (sessions / "s.json").read_bytes()
    limit = len(saved) + 100

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    second = subprocess.run(
        [gptcli_executable(), "ask", "-t", "0", "-n", "40", "--session", "s", ROMEO],
        env=gptcli.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=limited,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0
    assert "Shakespeare" in second.stdout
    assert "cannot save session 's' (File too large)" in second.stderr
    assert second.stderr.count("\n") == 1
    assert (sessions / "s.json").read_bytes() == saved
    # The index and the KV snapshot from the first turn stay; no temporary file is left.
    assert sorted(p.name for p in sessions.iterdir()) == [
        INDEX_FILE,
        ".s.lock",
        "s.json",
        "s.kv",
    ]

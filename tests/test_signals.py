"""Faults that do not come from the keyboard: a closed terminal (SIGHUP), a kill (SIGTERM),
and Ctrl-C at any moment of `ask`, which must never end in status 0."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from gptcli.store.sessions import SessionStore
from tests.conftest import Gptcli, gptcli_executable
from tests.depth import rounds
from tests.terminal import Terminal
from tests.timing import blocked_reading, patience, wait_until

STORY = "Write a very long story about a dragon."
STATUS: dict[int, int] = {signal.SIGHUP: 129, signal.SIGTERM: 143, signal.SIGINT: 130}


def _session(home: Path, name: str) -> dict[str, object]:
    data = json.loads((home / "data" / "sessions" / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_ask_never_reports_success(gptcli: Gptcli) -> None:
    """SIGINT swept over start-up and the wait for a stdin that never closes.

    The path to status 0 was a KeyboardInterrupt raised inside an import lock's
    weakref callback: Python prints "Exception ignored", drops it, and ask went on
    to answer once the writer closed the pipe.

    Every other run waits until gptcli sits reading stdin, which must end in 130; the
    runs between are sent the signal at a random moment of the start-up, as long as
    the last waiting run took to get there on this machine, now."""
    rng = random.Random(7)
    seen: dict[int, int] = {}
    start_up = 0.8
    for run in range(rounds(16, 64)):
        waiting = run % 2 == 0
        started = time.monotonic()
        child = subprocess.Popen(
            [gptcli_executable(), "ask", "summarise"],
            env=gptcli.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write(b"some text, and the writer never closes the pipe\n")
        child.stdin.flush()
        if waiting:
            wait_until(partial(blocked_reading, child.pid), 60, "gptcli to wait for more stdin")
            start_up = time.monotonic() - started
        else:
            time.sleep(rng.uniform(0, start_up))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=patience(60))
        seen[child.returncode] = seen.get(child.returncode, 0) + 1
        assert child.returncode != 0, err
        assert out == b""
        if waiting:
            assert child.returncode == 130, err
        if child.returncode != 130:
            # The signal came before gptcli's handlers were installed: Python's own handler
            # answers it (killed by SIGINT, or exit 1 while it imports its site module), in
            # Python's start-up or in the package's first lines (gptcli/__init__.py).
            assert child.returncode in (1, -signal.SIGINT), (child.returncode, err)
            frames = re.findall(rb'File "([^"]*)"', err)
            assert all(f.endswith(b"/gptcli/__init__.py") for f in frames if b"/gptcli/" in f), err
        else:
            assert b"Traceback" not in err and b"Exception ignored" not in err, err
    print(seen)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_answer_in_ask_session_keeps_the_partial_answer(
    gptcli: Gptcli, signum: int
) -> None:
    child = subprocess.Popen(
        [gptcli_executable(), "ask", "--session", "s", "-n", "3000", "--ignore-eos", STORY],
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    first = child.stdout.read(60)  # it is answering
    child.send_signal(signum)
    rest, err = child.communicate(timeout=patience(60))
    assert child.returncode == STATUS[signum], err
    assert b"Traceback" not in err
    messages = _session(gptcli.home, "s")["messages"]
    assert isinstance(messages, list) and len(messages) == 2
    answer = messages[1]
    assert answer["finish_reason"] == "interrupted"
    assert answer["content"] and (first + rest).decode().startswith(answer["content"][:50])
    again = gptcli("ask", "--session", "s", "-n", "5", "Go on.")
    assert again.returncode == 0, again.stderr
    assert len(_session(gptcli.home, "s")["messages"]) == 4  # type: ignore[arg-type]


def _chat(gptcli: Gptcli, *args: str) -> Terminal:
    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "chat", "--no-history", *args], env)
    term.wait_prompt(1)
    return term


def _hang_up(term: Terminal) -> None:
    """What closing a terminal window does: the pty's master side goes away (SIGHUP).

    Closed through the file object that owns the descriptor: a bare os.close left that
    object to close the same number again when collected, by then another test's pty.
    """
    term.child.ptyproc.fileobj.close()
    term.child.child_fd = -1


def _exit_status(term: Terminal, timeout: float = 60) -> int:
    deadline = time.monotonic() + patience(timeout)
    while term.child.isalive():
        assert time.monotonic() < deadline, "still running"
        time.sleep(0.05)
    if term.child.signalstatus is not None:
        return -int(term.child.signalstatus)
    return int(term.child.exitstatus)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["hang-up", "SIGTERM"])
def test_chat_ended_mid_answer_saves_it_and_resumes_from_its_state(
    gptcli: Gptcli, how: str
) -> None:
    term = _chat(gptcli, "--resume", "trip", "-t", "0", "--ignore-eos", "-n", "3000")
    try:
        term.type_line(STORY)
        term.wait_for(lambda screen: len(screen.split()) > 60)  # it is answering
        if how == "hang-up":
            _hang_up(term)
        else:
            term.child.kill(signal.SIGTERM)
        status = _exit_status(term)
        raw = term.raw.decode("utf-8", errors="replace")
    finally:
        if term.child.isalive():
            term.child.kill(signal.SIGKILL)
    assert status == (129 if how == "hang-up" else 143), raw[-2000:]
    assert "Traceback" not in raw
    messages = _session(gptcli.home, "trip")["messages"]
    assert isinstance(messages, list) and len(messages) == 2
    assert messages[1]["finish_reason"] == "interrupted" and messages[1]["content"]
    sessions = gptcli.home / "data" / "sessions"
    assert (sessions / "trip.kv").stat().st_size > 0  # the KV state was written
    assert not list(sessions.glob(".*.tmp"))
    term = _chat(gptcli, "--resume", "trip")
    try:
        screen = term.wait_text("tokens need no processing")
        assert "restored the saved state" in screen
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()


@pytest.mark.slow
def test_chat_at_its_prompt_ends_on_sigterm_and_hang_up(gptcli: Gptcli) -> None:
    for how, expected in (("SIGTERM", 143), ("hang-up", 129)):
        term = _chat(gptcli)
        try:
            if how == "hang-up":
                _hang_up(term)
            else:
                term.child.kill(signal.SIGTERM)
            assert _exit_status(term) == expected
            assert "Traceback" not in term.raw.decode("utf-8", errors="replace")
        finally:
            if term.child.isalive():
                term.child.kill(signal.SIGKILL)


WRITER = """
import sys
from pathlib import Path
from gptcli.store.sessions import SessionStore, StoredMessage
from gptcli.terminal.interrupt import stop_gracefully
stop_gracefully()
store = SessionStore(Path(sys.argv[1]))
tag, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    store.update("shared", lambda s: s.messages.append(StoredMessage("user", f"{tag}-{i}" * 50)),
                 create=True)
    print(i, flush=True)
"""


def test_signals_at_random_moments_of_saves_never_break_the_file(tmp_path: Path) -> None:
    """SIGTERM or SIGHUP, sometimes twice in a row, while the store rewrites a session."""
    iterations = rounds(15, 60, "GPTCLI_KILL_ITERATIONS")
    store = SessionStore(tmp_path)
    acknowledged = 0
    rng = random.Random(5)
    for iteration in range(iterations):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"k{iteration}", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()  # it is writing
        time.sleep(rng.uniform(0, 0.05))
        signum = rng.choice([signal.SIGTERM, signal.SIGHUP])
        child.send_signal(signum)
        if rng.random() < 0.3:
            child.send_signal(rng.choice([signal.SIGTERM, signal.SIGHUP]))
        out, err = child.communicate(timeout=patience(60))
        assert child.returncode in (1, -signal.SIGTERM, -signal.SIGHUP), err
        assert "corrupt" not in err
        acknowledged += 1 + len(out.splitlines())
        session = store.load("shared")  # never corrupt: the old or the new version
        assert len(session.messages) >= acknowledged
    assert not list(tmp_path.glob("sessions/*.corrupt-*"))


SWALLOWER = """
import time
from gptcli.terminal.interrupt import stop_gracefully
stop_gracefully()
class Slow:
    def __del__(self):
        print("finalizing", flush=True)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            pass
slow = Slow()
del slow
print("after the finalizer", flush=True)
time.sleep(3)
print("finished the work", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_swallowed_by_a_finalizer_still_stops_the_program(signum: int) -> None:
    """Python ignores an exception raised in ``__del__``; the signal must not be lost with it."""
    child = subprocess.Popen(
        [sys.executable, "-c", SWALLOWER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "finalizing\n"
    child.send_signal(signum)
    out, err = child.communicate(timeout=patience(30))
    assert "finished the work" not in out
    if signum == signal.SIGTERM:
        assert child.returncode == 1, err
        assert "Stopped: SIGTERM" in err
    else:  # Python ends an uncaught KeyboardInterrupt by the signal itself
        assert child.returncode == -signal.SIGINT, err
        assert "KeyboardInterrupt" in err
    assert "Exception ignored" not in err

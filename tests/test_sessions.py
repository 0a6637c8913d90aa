"""Sessions on real files: round trips, kill -9, concurrent writers, bad state, the CLI."""

from __future__ import annotations

import json
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptcli.errors import UsageError
from gptcli.store.sessions import Session, SessionError, SessionStore, StoredMessage, check_name
from tests.conftest import Gptcli
from tests.depth import rounds
from tests.terminal import Terminal

FRANCE = "Name the capital city of France."
WRITER = """
import sys
from pathlib import Path
from gptcli.store.sessions import SessionStore, StoredMessage
store = SessionStore(Path(sys.argv[1]))
tag, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    store.update("shared", lambda s: s.messages.append(StoredMessage("user", f"{tag}-{i}")),
                 create=True)
    print(i, flush=True)
"""


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    answer = StoredMessage(
        "assistant",
        "Paris.",
        finish_reason="interrupted",
        model={"name": "m", "file": "m.gguf", "sha256": "ab" * 32},
        options={"temperature": 0.5, "stop": ["x"]},
        seed=7,
        usage={"prompt_tokens": 3, "completion_tokens": 2},
        backend="local",
        alternatives=[{"role": "assistant", "content": "Lyon?", "seed": 1}],
    )

    def fill(session: Session) -> None:
        session.system = "Be brief."
        session.title = "t"
        session.messages += [StoredMessage("user", "Q\x00\ud800 ✓ \x1b[2J"), answer]

    store.update("rt", fill, create=True)
    loaded = store.load("rt")
    assert loaded.system == "Be brief."
    assert loaded.messages[0].content == "Q\x00\ud800 ✓ \x1b[2J"
    assert loaded.messages[1] == StoredMessage(**{**answer.__dict__, "time": answer.time})
    assert store.path("rt").stat().st_mode & 0o777 == 0o600
    assert store.directory.stat().st_mode & 0o777 == 0o700


@settings(max_examples=rounds(50, 200), deadline=None)
@given(
    text=st.text(max_size=200)
    | st.lists(st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "é", "🎉"])).map("".join)
)
def test_store_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    store = SessionStore(tmp_path_factory.mktemp("any"))
    store.update("x", lambda s: s.messages.append(StoredMessage("user", text)), create=True)
    assert store.load("x").messages[0].content == text


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "", ".hidden", "x" * 65, "a\x00b"])
def test_names_that_could_leave_the_directory_are_rejected(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


def test_kill_9_during_saves_never_breaks_the_file(tmp_path: Path) -> None:
    iterations = rounds(15, 60, "GPTCLI_KILL_ITERATIONS")
    store = SessionStore(tmp_path)
    acknowledged = 0
    rng = random.Random(4)
    for iteration in range(iterations):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"k{iteration}", "1000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()  # it is writing
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        acknowledged += 1 + len(out.splitlines())
        session = store.load("shared")  # never corrupt: old or new version
        assert len(session.messages) >= acknowledged
    assert not list(tmp_path.glob("sessions/*.corrupt-*"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    writers, turns = 4, 25
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"w{n}", str(turns)],
            stdout=subprocess.DEVNULL,
        )
        for n in range(writers)
    ]
    assert all(child.wait(timeout=120) == 0 for child in children)
    contents = [m.content for m in SessionStore(tmp_path).load("shared").messages]
    assert len(contents) == writers * turns
    for n in range(writers):
        assert [c for c in contents if c.startswith(f"w{n}-")] == [
            f"w{n}-{i}" for i in range(turns)
        ]


def test_corrupt_file_is_moved_aside_never_overwritten(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.update("c", lambda s: s.messages.append(StoredMessage("user", "hi")), create=True)
    broken = store.path("c").read_bytes()[:-40]
    store.path("c").write_bytes(broken)
    with pytest.raises(SessionError, match="corrupt"):
        store.load("c")
    aside = list(store.directory.glob("c.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == broken
    assert not store.path("c").exists()


@pytest.mark.slow
def test_ask_continue_chains_context(gptcli: Gptcli) -> None:
    first = gptcli("ask", "-c", "-t", "0", "-n", "40", FRANCE)
    second = gptcli("ask", "-c", "-t", "0", "-n", "40", "What is the population of that city?")
    assert first.returncode == second.returncode == 0
    assert "Paris" in second.stdout
    listed = json.loads(gptcli("sessions", "list", "--json").stdout)
    assert len(listed) == 1 and listed[0]["turns"] == 2
    alone = gptcli("ask", "-t", "0", "-n", "40", "What is the population of that city?")
    assert alone.stdout != second.stdout  # without -c there is no context


def test_export_to_a_file_that_cannot_be_written_is_one_line(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    store = SessionStore(gptcli.home / "data")
    store.update("geo", lambda s: s.messages.append(StoredMessage("user", FRANCE)), create=True)
    missing = tmp_path / "no" / "such" / "x.md"
    for target, why in (
        (tmp_path, "Is a directory"),
        (missing, "No such file or directory"),
    ):
        result = gptcli("sessions", "export", "geo", "-o", str(target))
        assert (result.returncode, result.stderr) == (
            2,
            f"gptcli: error: cannot write {target}: {why}\n",
        )
    assert not missing.parent.exists()  # a missing folder is refused, not created
    if Path("/proc/version").exists():
        proc = gptcli("sessions", "export", "geo", "-o", "/proc/version")
        assert proc.returncode == 2
        assert proc.stderr.startswith("gptcli: error: cannot write /proc/version: ")
        assert proc.stderr.count("\n") == 1
    # A device is written to, as a shell's > does, not replaced by a file.
    assert gptcli("sessions", "export", "geo", "-o", "/dev/null").returncode == 0
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    written = tmp_path / "geo.md"
    assert gptcli("sessions", "export", "geo", "-o", str(written)).returncode == 0
    assert FRANCE in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


@pytest.mark.slow
def test_ask_session_records_everything(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--session", "geo", "--seed", "5", "-t", "0", "-n", "20", FRANCE)
    assert result.returncode == 0
    data = json.loads((gptcli.home / "data" / "sessions" / "geo.json").read_text())
    assert data["schema"] == 2
    user, answer = data["messages"]
    assert user["role"] == "user" and user["content"] == FRANCE and user["time"]
    assert answer["content"] == result.stdout.rstrip("\n")
    assert answer["model"]["sha256"].startswith("b179c9523d0e")
    assert answer["model"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert answer["seed"] == 5
    assert answer["options"]["temperature"] == 0.0
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["finish_reason"] in ("stop", "length")
    exported = gptcli("sessions", "export", "geo", "--format", "json")
    assert json.loads(exported.stdout)["messages"][1]["seed"] == 5
    markdown = gptcli(
        "sessions", "export", "geo", "--format", "md", "-o", str(gptcli.home / "g.md")
    )
    assert markdown.returncode == 0
    assert FRANCE in (gptcli.home / "g.md").read_text()
    assert gptcli("sessions", "rename", "geo", "places").returncode == 0
    assert "Paris" in gptcli("sessions", "show", "places").stdout
    assert gptcli("sessions", "show", "geo").returncode == 1
    assert gptcli("sessions", "rm", "places").returncode == 0
    assert json.loads(gptcli("sessions", "list", "--json").stdout) == []


@pytest.mark.slow
def test_bad_session_state_end_to_end(gptcli: Gptcli) -> None:
    sessions = gptcli.home / "data" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "bad.json").write_text('{"schema": 1, "messages": [{"role": "us')
    corrupt = gptcli("ask", "--session", "bad", "-n", "5", "Hello")
    assert corrupt.returncode == 0
    assert "corrupt" in corrupt.stderr and "moved aside" in corrupt.stderr
    assert len(list(sessions.glob("bad.json.corrupt-*"))) == 1
    newer = {"schema": 99, "messages": [{"role": "user", "content": "from the future"}]}
    (sessions / "future.json").write_text(json.dumps(newer))
    before = (sessions / "future.json").read_bytes()
    future = gptcli("ask", "--session", "future", "-n", "5", "Hello")
    assert future.returncode == 0
    assert "newer gptcli" in future.stderr
    assert (sessions / "future.json").read_bytes() == before
    traversal = gptcli("ask", "--session", "../../escape", "Hello")
    assert traversal.returncode == 2
    assert "invalid session name" in traversal.stderr
    assert gptcli("sessions", "show", "../config/config").returncode == 2


@pytest.mark.slow
def test_unwritable_store_keeps_the_conversation_going(gptcli: Gptcli) -> None:
    data = gptcli.home / "data"
    data.mkdir()
    (data / "sessions").write_text("not a directory")  # every save fails
    result = gptcli("ask", "--session", "x", "-t", "0", "-n", "30", FRANCE)
    assert result.returncode == 0
    assert "Paris" in result.stdout
    assert result.stderr.count("cannot save session") == 1


@pytest.mark.slow
def test_repl_saves_resumes_and_keeps_retried_answers(gptcli: Gptcli) -> None:
    from tests.conftest import gptcli_executable

    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "-t", "0", "-n", "40"], env)
    try:
        term.wait_prompt(1)
        term.type_line(FRANCE)
        term.wait_prompt(2)
        term.type_line("/set temperature 1")
        term.type_line("/set seed 9")
        term.type_line("/retry")
        term.wait_prompt(5)
        term.type_line("/save trip")
        term.wait_text("(session saved as trip)")
        assert "session trip" in term.screen_text()  # the toolbar
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    shown = gptcli("sessions", "show", "trip").stdout
    assert "Earlier answer 1" in shown
    assert "Paris" in shown
    resumed = Terminal(
        [gptcli_executable(), "chat", "--resume", "trip", "-t", "0", "-n", "40"], env
    )
    try:
        resumed.wait_prompt(1)
        assert "(resumed session trip: 1 turn)" in resumed.screen_text()
        assert "(restored the saved state:" in resumed.screen_text()
        resumed.type_line("What is the population of that city?")
        resumed.wait_prompt(2)
        resumed.type_line("/sessions")
        resumed.wait_text("* trip")
        resumed.type_line("/search capital france")
        resumed.wait_text("(/load NAME continues one)")
        assert "trip" in resumed.screen_text().split("/search capital france")[-1]
    finally:
        resumed.close()
    assert json.loads(gptcli("sessions", "list", "--json").stdout)[0]["turns"] == 2


@pytest.mark.slow
def test_no_save_leaves_nothing(gptcli: Gptcli) -> None:
    from tests.conftest import gptcli_executable

    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "--no-save", "-n", "5"], env)
    try:
        term.wait_prompt(1)
        term.type_line("a secret")
        term.wait_prompt(2)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert not (gptcli.home / "data" / "sessions").exists()
    assert not (gptcli.home / "data" / "history").exists()


def test_asking_about_a_missing_session_creates_nothing(gptcli: Gptcli) -> None:
    data = gptcli.home / "data"
    questions = [
        ("sessions", "show", "nosuch"),
        ("sessions", "export", "nosuch"),
        ("sessions", "rm", "nosuch"),
        ("sessions", "rename", "nosuch", "other"),
    ]
    for question in questions:
        result = gptcli(*question)
        assert result.returncode == 1
        assert result.stderr.startswith("gptcli: error: no session named 'nosuch'")
        assert result.stderr.count("\n") == 1
    assert not (data / "sessions").exists()
    store = SessionStore(data)
    store.update("kept", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    before = sorted(p.name for p in store.directory.iterdir())
    for question in questions:
        assert gptcli(*question).returncode == 1
    assert sorted(p.name for p in store.directory.iterdir()) == before
    with pytest.raises(SessionError, match="no session named 'gone'"):
        store.load("gone")
    assert sorted(p.name for p in store.directory.iterdir()) == before


def test_list_reports_a_corrupt_file_and_moves_it_aside(gptcli: Gptcli) -> None:
    store = SessionStore(gptcli.home / "data")
    store.update("good", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    store.update("bad", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    store.update("worse", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    assert len(store.list()) == 3  # indexed while they were sound
    store.path("bad").write_text('{"schema": 1, "messages": [{"role": "us')
    store.path("worse").write_bytes(b"\xff\xfe")
    listed = gptcli("sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["good"]
    lines = sorted(listed.stderr.splitlines())
    assert len(lines) == 2
    for line, name in zip(lines, ("bad", "worse"), strict=True):
        assert line.startswith(f"gptcli: warning: session file {store.path(name)} is corrupt (")
        assert f"moved aside to {name}.json.corrupt-" in line
        assert len(list(store.directory.glob(f"{name}.json.corrupt-*"))) == 1
        assert not (store.directory / f".{name}.lock").exists()  # no lock for a session gone
    assert (store.directory / ".good.lock").exists()
    again = gptcli("sessions", "list")
    assert again.returncode == 0 and again.stderr == ""
    assert "good" in again.stdout


def test_list_without_the_index_reports_a_corrupt_file_too(tmp_path: Path) -> None:
    notes: list[str] = []
    warnings: list[str] = []
    store = SessionStore(tmp_path, note=notes.append, warn=warnings.append)
    store.update("good", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    store.path("bad").write_text("[1, 2")
    store.index.path.unlink()
    store.index.path.mkdir()  # an index that cannot be opened: the files are read instead
    assert [s.name for s in store.list()] == ["good"]
    assert len(notes) == 1 and "session index unusable" in notes[0]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"session file {store.path('bad')} is corrupt (")
    assert len(list(store.directory.glob("bad.json.corrupt-*"))) == 1
    silent = SessionStore(tmp_path, note=notes.append)  # no one to warn: nothing is moved
    silent.path("bad").write_text("[1, 2")
    assert [s.name for s in silent.list()] == ["good"]
    assert silent.path("bad").exists()


@pytest.mark.slow
def test_save_false_stops_the_chat_but_not_an_explicit_ask_session(gptcli: Gptcli) -> None:
    from tests.conftest import gptcli_executable

    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("save = false\n")
    asked = gptcli("ask", "--session", "trip", "-n", "5", "-t", "0", FRANCE)
    assert asked.returncode == 0, asked.stderr
    path = gptcli.home / "data" / "sessions" / "trip.json"
    assert len(json.loads(path.read_text())["messages"]) == 2  # the flag asked for it
    again = gptcli("ask", "-c", "-n", "5", "-t", "0", "And of Italy?")
    assert again.returncode == 0, again.stderr
    assert len(json.loads(path.read_text())["messages"]) == 4
    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "chat", "--resume", "trip", "-n", "5"], env)
    try:
        term.wait_prompt(1)
        term.type_line("not kept")
        term.wait_prompt(2)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert len(json.loads(path.read_text())["messages"]) == 4  # the chat saved nothing


def test_an_empty_session_name_is_refused_before_any_work(gptcli: Gptcli) -> None:
    """`--session "$NAME"` with NAME unset: one line and exit 2, not an answer saved nowhere."""
    done = gptcli("ask", "--session", "", "-n", "4", "hi")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("gptcli: error: invalid session name ''")
    assert not (gptcli.home / "data" / "sessions").exists()


def test_continue_and_a_named_session_together_are_refused(gptcli: Gptcli) -> None:
    assert gptcli("ask", "--session", "older", "-n", "2", "hi").returncode == 0
    both = gptcli("ask", "-c", "--session", "other", "-n", "2", "hi")
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr == (
        "gptcli: error: -c continues the most recent session: not with --session NAME\n"
    )
    assert not (gptcli.home / "data" / "sessions" / "other.json").exists()

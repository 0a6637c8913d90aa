"""`ask --session` resumes from the session's KV snapshot and keeps it up to date."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gptcli.store.snapshot import MAGIC
from tests.conftest import Gptcli, gptcli_executable
from tests.depth import rounds
from tests.terminal import Terminal

pytestmark = pytest.mark.slow
QUESTIONS = [
    "Name the capital city of France.",
    "Tell me about its river.",
    "And its museums?",
    "What food is it known for?",
    "Name one famous painter from there.",
]


def ask(gptcli: Gptcli, session: str, question: str, *extra: str) -> dict[str, Any]:
    command = ("ask", "--session", session, "--json", "-t", "0", "-n", "24", *extra, question)
    result = gptcli(*command, timeout=300)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    data["stderr"] = result.stderr
    return data


def cached(result: dict[str, Any]) -> int:
    return int(result["timings"]["cached_prompt_tokens"])


def sessions_dir(gptcli: Gptcli) -> Path:
    return gptcli.home / "data" / "sessions"


def answers(gptcli: Gptcli, session: str) -> list[str]:
    saved = json.loads((sessions_dir(gptcli) / f"{session}.json").read_text())
    return [m["content"] for m in saved["messages"] if m["role"] == "assistant"]


def test_scripted_conversation_through_the_snapshot_is_one_unbroken_conversation(
    gptcli: Gptcli,
) -> None:
    # The same turns held by one chat process, which never stops its engine: three, each
    # resumed from a snapshot that a resumed process wrote; all five with GPTCLI_DEEP_TESTS=1.
    questions = QUESTIONS[: rounds(3, 5)]
    env = {**gptcli.env, "TERM": "xterm-256color"}
    chat = [gptcli_executable(), "chat", "--resume", "held", "-t", "0", "-n", "24"]
    term = Terminal(chat, env)
    try:
        term.wait_prompt(1)
        for turn, question in enumerate(questions, start=2):
            term.type_line(question)
            term.wait_prompt(turn, timeout=300)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    kept, reprocessed = [], []
    for question in questions:
        kept.append(ask(gptcli, "kept", question))
        (sessions_dir(gptcli) / "again.kv").unlink(missing_ok=True)
        reprocessed.append(ask(gptcli, "again", question))
    # Processes resuming from the snapshot answer exactly as one that never stopped.
    assert [r["text"] for r in kept] == answers(gptcli, "held")
    # Processing the history again from scratch evaluates it in other batches, whose float
    # sums can flip a near tie later on; the first answers cannot differ.
    assert reprocessed[0]["text"] == kept[0]["text"]
    assert all(cached(r) == 0 for r in reprocessed)
    for before, after in itertools.pairwise(kept):
        # At least the previous turn's whole prompt came from the snapshot.
        assert cached(after) >= before["usage"]["prompt_tokens"]
    snapshot = sessions_dir(gptcli) / "kept.kv"
    assert snapshot.read_bytes().startswith(MAGIC)
    assert snapshot.stat().st_mode & 0o777 == 0o600
    assert not list(sessions_dir(gptcli).glob(".*.tmp"))


def test_a_bad_or_foreign_snapshot_is_ignored_and_replaced(gptcli: Gptcli) -> None:
    ask(gptcli, "geo", QUESTIONS[0])
    ask(gptcli, "other", "Write a haiku about snow.")
    directory = sessions_dir(gptcli)
    history = (directory / "geo.json").read_bytes()
    good = (directory / "geo.kv").read_bytes()
    (directory / "geo.kv").unlink()
    reference = ask(gptcli, "geo", QUESTIONS[1])
    header_end = good.index(b"\n", len(MAGIC))
    header = json.loads(good[len(MAGIC) : header_end])
    header["tokens"][5] = header["tokens"][5] + 1  # tokens that the state does not hold
    bad = {
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(len(good)),
        "header": MAGIC + b'{"key": 1}\n' + good[header_end + 1 :],
        "tokens": MAGIC + json.dumps(header).encode() + good[header_end:],
        "other session": (directory / "other.kv").read_bytes(),
        "world-readable": good,
    }
    # At most the prefix shared with the new prompt is kept: the system prompt, or what
    # comes before the token changed.
    reuse = {"other session": 40, "tokens": 5}
    for name, blob in bad.items():
        (directory / "geo.json").write_bytes(history)
        (directory / "geo.kv").write_bytes(blob)
        os.chmod(directory / "geo.kv", 0o644 if name == "world-readable" else 0o600)
        result = ask(gptcli, "geo", QUESTIONS[1])
        assert result["text"] == reference["text"], name
        assert cached(result) <= reuse.get(name, 0), (name, cached(result))
        assert (directory / "geo.kv").read_bytes().startswith(MAGIC), name  # replaced
    (directory / "geo.json").write_bytes(history)
    (directory / "geo.kv").write_bytes(good)
    os.chmod(directory / "geo.kv", 0o600)
    resumed = ask(gptcli, "geo", QUESTIONS[1])
    assert resumed["text"] == reference["text"] and cached(resumed) > 30
    # A snapshot from another context size is not used, then replaced by one for this size.
    (directory / "geo.json").write_bytes(history)
    other_window = ask(gptcli, "geo", QUESTIONS[1], "--ctx", "2048")
    assert cached(other_window) == 0 and other_window["text"] == reference["text"]
    assert b'"n_ctx": 2048' in (directory / "geo.kv").read_bytes()[:200]


def test_a_snapshot_that_cannot_be_written_never_fails_the_answer(gptcli: Gptcli) -> None:
    ask(gptcli, "geo", QUESTIONS[0])
    snapshot = sessions_dir(gptcli) / "geo.kv"
    snapshot.unlink()
    snapshot.mkdir(mode=0o700)  # nothing can be renamed over it
    result = ask(gptcli, "geo", QUESTIONS[1])
    assert result["text"]
    assert "could not save the session's state" in result["stderr"]
    quiet = ask(gptcli, "geo", QUESTIONS[2], "-q")
    assert quiet["stderr"] == ""
    turns = json.loads(gptcli("sessions", "list", "--json").stdout)[0]["turns"]
    assert turns == 3  # every turn was saved


def test_two_asks_at_once_in_one_session(gptcli: Gptcli) -> None:
    ask(gptcli, "geo", QUESTIONS[0])
    command = [gptcli_executable(), "ask", "--session", "geo", "-t", "0", "-n", "24"]
    running = [
        subprocess.Popen(
            [*command, question],
            env=gptcli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for question in QUESTIONS[1:3]
    ]
    for process in running:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    directory = sessions_dir(gptcli)
    history = (directory / "geo.json").read_bytes()
    assert len(json.loads(history)["messages"]) == 6
    # Whichever snapshot won holds one of the two histories: the next turn keeps only what
    # it shares with the saved one and processes the rest.
    following = ask(gptcli, "geo", QUESTIONS[3])
    assert following["text"]
    assert 0 < cached(following) < following["usage"]["prompt_tokens"]
    assert len(json.loads((directory / "geo.json").read_bytes())["messages"]) == 8
    assert (directory / "geo.kv").read_bytes().startswith(MAGIC)
    assert not list(directory.glob(".*.tmp"))


def test_chat_and_ask_continue_each_others_sessions(gptcli: Gptcli) -> None:
    env = {**gptcli.env, "TERM": "xterm-256color"}
    chat = [gptcli_executable(), "chat", "--resume", "trip", "-t", "0", "-n", "24"]
    term = Terminal(chat, env)
    try:
        term.wait_prompt(1)
        term.type_line(QUESTIONS[0])
        term.wait_prompt(2)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    from_chat = ask(gptcli, "trip", QUESTIONS[1])
    assert cached(from_chat) > 30  # the chat's snapshot was used
    term = Terminal(chat, env)
    try:
        screen = term.wait_text("tokens need no processing")
        assert "(restored the saved state:" in screen
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()

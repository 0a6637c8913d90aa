"""The sessions index on real files: 5,000 sessions, search, a broken or stale index, kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptcli.store import index as index_module
from gptcli.store.index import INDEX_FILE
from gptcli.store.sessions import SessionStore, StoredMessage
from tests.conftest import Gptcli
from tests.test_sessions import WRITER

PHRASE = "zebra quartz lighthouse"


def write_session(directory: Path, name: str, title: str, texts: list[str], updated: str) -> None:
    """A session file in the store's own format, without going through the store."""
    body = {
        "schema": 1,
        "name": name,
        "title": title,
        "system": None,
        "created": updated,
        "updated": updated,
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text, "time": updated}
            for i, text in enumerate(texts)
        ],
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(body, indent=1) + "\n")
    path.chmod(0o600)


def make_sessions(home: Path, count: int, messages: int = 40) -> Path:
    directory = home / "data" / "sessions"
    directory.mkdir(parents=True, mode=0o700)
    rng = random.Random(17)
    words = [f"word{i}" for i in range(2000)] + ["the", "river", "city", "of", "answer", "model"]
    for n in range(count):
        texts = [" ".join(rng.choices(words, k=25)) for _ in range(messages)]
        stamp = f"2025-01-01T00:00:00.{n:06d}+00:00"
        write_session(directory, f"s{n:05d}", f"talk {n}", texts, stamp)
    return directory


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as check:
        return str(check.execute("PRAGMA integrity_check").fetchone()[0])


def timed(gptcli: Gptcli, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = gptcli(*args, timeout=600)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    return elapsed, result.stdout


@pytest.mark.slow
def test_five_thousand_sessions_list_and_search(fresh_gptcli: Gptcli) -> None:
    directory = make_sessions(fresh_gptcli.home, 5000)
    write_session(
        directory, "needle", "an ordinary day", ["hello", f"I saw a {PHRASE} here"], "2024"
    )
    # Ranking: the words in the title and many times beat a single mention.
    write_session(directory, "often", "ferret ferret", ["ferret " * 20], "2024")
    write_session(directory, "once", "other", ["a ferret passed by"], "2024")
    build, _ = timed(fresh_gptcli, "sessions", "list")
    listed, out = timed(fresh_gptcli, "sessions", "list", "--json")
    rows = json.loads(out)
    assert len(rows) == 5003
    assert rows[0]["name"] == "s04999" and rows[0]["turns"] == 20
    found, out = timed(fresh_gptcli, "sessions", "search", f'"{PHRASE}"')
    assert out.splitlines()[0].split()[0] == "needle"
    assert len(out.splitlines()) == 1 and PHRASE in out
    ranked, out = timed(fresh_gptcli, "sessions", "search", "ferret", "--json")
    assert [hit["name"] for hit in json.loads(out)] == ["often", "once"]
    print(
        f"\n5,003 sessions: first list (index built) {build:.2f} s, list {listed:.2f} s, "
        f"search {found:.2f} s, ranked search {ranked:.2f} s"
    )


def test_search_output_json_shape_and_limit(fresh_gptcli: Gptcli) -> None:
    directory = make_sessions(fresh_gptcli.home, 30, messages=4)
    write_session(directory, "trip", "Paris in spring", ["Is the Louvre open?", "Yes."], "2026")
    hits = json.loads(fresh_gptcli("sessions", "search", "louvre", "--json").stdout)
    assert [(h["name"], h["title"], h["updated"]) for h in hits] == [
        ("trip", "Paris in spring", "2026")
    ]
    assert set(hits[0]) == {"name", "title", "updated", "snippet", "rank"}
    assert "Louvre" in hits[0]["snippet"] and isinstance(hits[0]["rank"], float)
    many = json.loads(fresh_gptcli("sessions", "search", "talk", "--json", "-n", "7").stdout)
    assert len(many) == 7
    lines = fresh_gptcli("sessions", "search", "talk", "--limit", "3").stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("s") for line in lines)
    none = fresh_gptcli("sessions", "search", "nothingmatchesthis")
    assert none.returncode == 0 and none.stdout == "" and "no session" in none.stderr
    odd = fresh_gptcli("sessions", "search", 'AND OR NOT " * ( ^')  # FTS syntax stays text
    assert odd.returncode == 0


def test_index_deleted_or_corrupted_is_rebuilt(fresh_gptcli: Gptcli) -> None:
    directory = make_sessions(fresh_gptcli.home, 40, messages=4)
    write_session(directory, "needle", "", [PHRASE], "2024")
    index = directory / INDEX_FILE

    def names_found() -> list[str]:
        result = fresh_gptcli("sessions", "search", PHRASE, "--json")
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return [hit["name"] for hit in json.loads(result.stdout)]

    assert names_found() == ["needle"]
    assert index.stat().st_mode & 0o777 == 0o600
    index.unlink()
    assert names_found() == ["needle"]
    index.write_bytes(os.urandom(8192))  # not a database at all
    assert names_found() == ["needle"]
    size = index.stat().st_size
    with open(index, "r+b") as handle:  # a valid header, pages overwritten in the middle
        handle.seek(size // 2)
        handle.write(os.urandom(size - size // 2))
    assert names_found() == ["needle"]
    assert len(json.loads(fresh_gptcli("sessions", "list", "--json").stdout)) == 41
    assert integrity(index) == "ok"


def test_files_changed_by_hand_are_followed(fresh_gptcli: Gptcli) -> None:
    directory = make_sessions(fresh_gptcli.home, 10, messages=2)
    assert len(json.loads(fresh_gptcli("sessions", "list", "--json").stdout)) == 10
    write_session(directory, "copied", "copied in", ["a capybara in the garden"], "2030")
    listed = json.loads(fresh_gptcli("sessions", "list", "--json").stdout)
    assert listed[0]["name"] == "copied" and len(listed) == 11
    assert "copied" in fresh_gptcli("sessions", "search", "capybara").stdout
    write_session(directory, "copied", "copied in", ["now about an okapi"], "2030")
    assert fresh_gptcli("sessions", "search", "capybara").stdout == ""
    assert "copied" in fresh_gptcli("sessions", "search", "okapi").stdout
    (directory / "copied.json").unlink()
    assert fresh_gptcli("sessions", "search", "okapi").stdout == ""
    assert len(json.loads(fresh_gptcli("sessions", "list", "--json").stdout)) == 10
    (directory / "s00003.json").write_text("{ broken")
    assert len(json.loads(fresh_gptcli("sessions", "list", "--json").stdout)) == 9


def test_saves_rename_and_remove_keep_the_index(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.update("a", lambda s: s.messages.append(StoredMessage("user", "walrus")), create=True)
    assert [h.name for h in store.search("walrus")] == ["a"]
    store.rename("a", "b")
    assert [h.name for h in store.search("walrus")] == ["b"]
    store.update("b", lambda s: s.messages.append(StoredMessage("user", "\ud800 lone \x00")))
    assert [h.name for h in store.search("lone")] == ["b"]
    store.remove("b")
    assert store.search("walrus") == [] and store.list() == []


def test_an_unusable_index_falls_back_to_the_files(tmp_path: Path) -> None:
    notes: list[str] = []
    store = SessionStore(tmp_path, note=notes.append)
    (store.directory).mkdir(mode=0o700)
    (store.directory / INDEX_FILE).mkdir()  # cannot be opened as a database
    store.update("x", lambda s: s.messages.append(StoredMessage("user", "a narwhal")), create=True)
    assert store.load("x").messages[0].content == "a narwhal"  # the save went through
    assert [s.name for s in store.list()] == ["x"]
    hits = store.search("narwhal")
    assert [h.name for h in hits] == ["x"] and "narwhal" in hits[0].snippet
    assert notes and all("reading every file" in note for note in notes)


def test_without_fts5_search_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = ("CREATE VIRTUAL TABLE search USING no_such_module(title, body)",)
    monkeypatch.setattr(index_module, "_FTS", broken)
    store = SessionStore(tmp_path)
    store.update("x", lambda s: s.messages.append(StoredMessage("user", "An Axolotl")), create=True)
    store.update("y", lambda s: s.messages.append(StoredMessage("user", "a newt")), create=True)
    hits = store.search("axolotl")
    assert [h.name for h in hits] == ["x"] and "Axolotl" in hits[0].snippet
    assert [s.name for s in store.list()] == ["y", "x"]


@pytest.mark.slow
def test_kill_9_during_saves_leaves_index_and_files_consistent(tmp_path: Path) -> None:
    iterations = int(os.environ.get("GPTCLI_KILL_ITERATIONS", "20"))
    store = SessionStore(tmp_path)
    rng = random.Random(9)
    acknowledged = 0
    for iteration in range(iterations):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"k{iteration}", "1000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        acknowledged += 1 + len(out.splitlines())
        session = store.load("shared")
        assert len(session.messages) >= acknowledged
        (summary,) = store.list()
        assert summary.turns == session.turns  # the index agrees with the file
        last = session.messages[-1].content
        assert [h.name for h in store.search(f'"{last}"')] == ["shared"]
        assert integrity(store.directory / INDEX_FILE) == "ok"
    assert not list(tmp_path.glob("sessions/*.corrupt-*"))

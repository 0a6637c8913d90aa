"""A rebuildable SQLite index of the sessions directory: summaries to list, full text to search.

The JSON files stay the only source of truth. The index keeps, for each file, the
``(size, mtime_ns, ctime_ns)`` it was built from; every read first compares them
with one ``os.scandir`` of the directory and re-reads only the files that differ,
so a file copied in by hand is found and a deleted one disappears. A save updates
its row under the session's lock, after the file is in place: a crash between the
two leaves a row whose key no longer matches, which the next read repairs. An
index that is corrupt or from another version is thrown away and rebuilt. Every
failure here is an ``IndexUnavailable`` for the caller to fall back on the files.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

INDEX_FILE = ".index.sqlite3"
VERSION = 1
# Marks around the matched words in a snippet; the caller decides how to show them.
MARK_START, MARK_END = "\x02", "\x03"
_BATCH = 250  # files re-read per write transaction, so a save never waits long
_SAVE_WAIT_S = 1.0
_READ_WAIT_S = 30.0

_SCHEMA = (
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
        readable INTEGER NOT NULL,
        title TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
        turns INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX sessions_updated ON sessions(updated)",
)
# External content: the text is kept once, in ``sessions``; triggers keep the two in step.
_FTS = (
    """CREATE VIRTUAL TABLE search USING fts5(
        title, body, content='sessions', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER sessions_ai AFTER INSERT ON sessions BEGIN
        INSERT INTO search(rowid, title, body) VALUES (new.id, new.title, new.body);
    END""",
    """CREATE TRIGGER sessions_ad AFTER DELETE ON sessions BEGIN
        INSERT INTO search(search, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    END""",
)


class IndexUnavailable(Exception):
    """The index cannot be used now; the files can. ``retry``: it was thrown away, try again."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


@dataclass(frozen=True)
class Entry:
    """What the index keeps of one session."""

    title: str
    model: str
    turns: int
    updated: str
    text: str


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    model: str
    turns: int
    updated: str


@dataclass(frozen=True)
class Hit:
    """One session matching a search, best first; ``snippet`` has the matches between marks."""

    name: str
    title: str
    updated: str
    snippet: str
    rank: float


FileKey = tuple[int, int, int]
Parse = Callable[[bytes, str], Entry]


def clean(text: str) -> str:
    """SQLite takes only valid UTF-8; lone surrogates and NUL become harmless."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")


def key_of(status: os.stat_result) -> FileKey:
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def query_terms(text: str) -> list[str]:
    """Words, and "quoted phrases", of a search: every one must match."""
    return [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', text) if (a or b).strip()]


class SessionIndex:
    """The index file beside the sessions: private, derived, safe to delete at any time."""

    def __init__(self, directory: Path, is_name: Callable[[str], bool], parse: Parse) -> None:
        self.directory = directory
        self.path = directory / INDEX_FILE
        self.is_name = is_name
        self.parse = parse

    # -- connection ----------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, wait_s: float) -> Iterator[sqlite3.Connection]:
        try:
            import sqlite3
        except ImportError as exc:  # a Python built without it
            raise IndexUnavailable("no sqlite3 module") from exc
        try:
            connection = self._open(wait_s)
            try:
                yield connection
            finally:
                connection.close()
        except sqlite3.Error as exc:
            corrupt = type(exc) is sqlite3.DatabaseError or "no such" in str(exc)
            if corrupt:
                self.discard()  # it is only a copy of the files
            raise IndexUnavailable(str(exc), retry=corrupt) from exc
        except OSError as exc:
            raise IndexUnavailable(exc.strerror or str(exc)) from exc

    def _open(self, wait_s: float) -> sqlite3.Connection:
        import sqlite3

        # Created here so that it, and the journal files SQLite gives its mode, are private.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        connection = sqlite3.connect(self.path, timeout=wait_s, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            if connection.execute("PRAGMA user_version").fetchone()[0] != VERSION:
                self._create(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _create(self, connection: sqlite3.Connection) -> None:
        import sqlite3

        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute("PRAGMA user_version").fetchone()[0] != VERSION:
                connection.execute("DROP TABLE IF EXISTS search")
                connection.execute("DROP TABLE IF EXISTS sessions")
                for statement in _SCHEMA:
                    connection.execute(statement)
                with contextlib.suppress(sqlite3.OperationalError):  # no FTS5: list, and LIKE
                    for statement in _FTS:
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version={VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def discard(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")

    # -- writes, under the session's lock ------------------------------------

    def record(self, name: str, entry: Entry) -> None:
        """The session file ``name`` was just written with ``entry``'s content."""
        status = os.stat(self.directory / f"{name}.json")
        with self._connect(_SAVE_WAIT_S) as connection:
            connection.execute("BEGIN IMMEDIATE")
            _put(connection, name, key_of(status), entry)
            connection.execute("COMMIT")

    def forget(self, name: str) -> None:
        with self._connect(_SAVE_WAIT_S) as connection:
            connection.execute("DELETE FROM sessions WHERE name = ?", (name,))

    # -- reads ---------------------------------------------------------------

    def rows(self, unreadable: list[str] | None = None) -> list[Row]:
        """Every readable session, most recently updated first; the names of the files
        that do not parse are added to ``unreadable``."""
        with self._connect(_READ_WAIT_S) as connection:
            self._refresh(connection)
            found = connection.execute(
                "SELECT name, title, model, turns, updated FROM sessions WHERE readable "
                "ORDER BY updated DESC"
            ).fetchall()
            if unreadable is not None:
                unreadable.extend(
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sessions WHERE NOT readable ORDER BY name"
                    )
                )
        return [Row(*row) for row in found]

    def search(self, text: str, limit: int) -> list[Hit]:
        """Sessions holding every term of ``text``, best first (titles weigh more)."""
        terms = query_terms(text)
        if not terms:
            return []
        with self._connect(_READ_WAIT_S) as connection:
            self._refresh(connection)
            if _has_fts(connection):
                query = " ".join('"' + clean(t).replace('"', '""') + '"' for t in terms)
                found = connection.execute(
                    "SELECT s.name, s.title, s.updated, "
                    f"snippet(search, -1, '{MARK_START}', '{MARK_END}', '…', 16), "
                    "bm25(search, 5.0, 1.0) AS score "
                    "FROM search JOIN sessions s ON s.id = search.rowid "
                    "WHERE search MATCH ? AND s.readable ORDER BY score LIMIT ?",
                    (query, limit),
                ).fetchall()
                return [Hit(*row) for row in found]
            return self._search_without_fts(connection, terms, limit)

    def _search_without_fts(
        self, connection: sqlite3.Connection, terms: list[str], limit: int
    ) -> list[Hit]:
        where = " AND ".join(["instr(lower(title || ' ' || body), ?) > 0"] * len(terms))
        found = connection.execute(
            f"SELECT name, title, updated, title || ' ' || body FROM sessions "
            f"WHERE readable AND {where} ORDER BY updated DESC LIMIT ?",
            (*[clean(t).lower() for t in terms], limit),
        ).fetchall()
        return [Hit(n, t, u, snippet_of(text, terms), 0.0) for n, t, u, text in found]

    # -- keeping up with the files -------------------------------------------

    def _on_disk(self) -> dict[str, FileKey]:
        found = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name.removesuffix(".json")
                if name == entry.name or not self.is_name(name):
                    continue
                try:
                    status = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(status.st_mode):
                    found[name] = key_of(status)
        return found

    def _refresh(self, connection: sqlite3.Connection) -> None:
        """Bring the rows in line with the files: re-read what changed, drop what went."""
        on_disk = self._on_disk()
        known = {
            name: (size, mtime, ctime)
            for name, size, mtime, ctime in connection.execute(
                "SELECT name, size, mtime_ns, ctime_ns FROM sessions"
            )
        }
        gone = [name for name in known if name not in on_disk]
        changed = sorted(name for name, key in on_disk.items() if known.get(name) != key)
        if gone:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("DELETE FROM sessions WHERE name = ?", [(n,) for n in gone])
            connection.execute("COMMIT")
        for start in range(0, len(changed), _BATCH):
            connection.execute("BEGIN IMMEDIATE")
            for name in changed[start : start + _BATCH]:
                self._reread(connection, name)
            connection.execute("COMMIT")

    def _reread(self, connection: sqlite3.Connection, name: str) -> None:
        # The key comes from the descriptor that is read, so key and content always agree.
        try:
            with open(self.directory / f"{name}.json", "rb") as handle:
                key = key_of(os.fstat(handle.fileno()))
                data = handle.read()
        except FileNotFoundError:
            connection.execute("DELETE FROM sessions WHERE name = ?", (name,))
            return
        try:
            entry: Entry | None = self.parse(data, name)
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            entry = None  # left for load() to report and move aside
        _put(connection, name, key, entry)


def _put(connection: sqlite3.Connection, name: str, key: FileKey, entry: Entry | None) -> None:
    connection.execute("DELETE FROM sessions WHERE name = ?", (name,))
    if entry is None:
        connection.execute(
            "INSERT INTO sessions(name, size, mtime_ns, ctime_ns, readable) VALUES (?, ?, ?, ?, 0)",
            (name, *key),
        )
        return
    connection.execute(
        "INSERT INTO sessions(name, size, mtime_ns, ctime_ns, readable, title, model, turns, "
        "updated, body) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
        (
            name,
            *key,
            clean(entry.title),
            clean(entry.model),
            entry.turns,
            entry.updated,
            clean(entry.text),
        ),
    )


def _has_fts(connection: sqlite3.Connection) -> bool:
    found = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'search'").fetchone()
    return found is not None


def snippet_of(text: str, terms: list[str], width: int = 80) -> str:
    """Some words around the first match of any term, the matches marked."""
    lowered = text.lower()
    places = [(lowered.find(t.lower()), t) for t in terms]
    places = [(at, t) for at, t in places if at >= 0]
    if not places:
        return " ".join(text[:width].split())
    at, term = min(places)
    start = max(0, at - width // 2)
    piece = text[start:at] + MARK_START + text[at : at + len(term)] + MARK_END
    piece += text[at + len(term) : at + len(term) + width // 2]
    return ("…" if start else "") + " ".join(piece.split()) + "…"

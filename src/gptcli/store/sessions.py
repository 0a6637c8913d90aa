"""Sessions on disk: one JSON file per conversation, versioned, atomic and locked.

Every change is a read-modify-write under an exclusive file lock, written to a
temporary file, fsynced and renamed over the old one: a crash at any moment
leaves the previous or the new version, and two processes appending to one
session lose nothing. A file that does not parse is moved aside as
``<name>.json.corrupt-<time>``, never overwritten. A file from a newer schema
is read but never written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gptcli.paths import ensure_private_dir, write_private_file
from gptcli.store.blobs import BlobStore
from gptcli.store.index import Entry, Hit, IndexUnavailable, SessionIndex, query_terms, snippet_of
from gptcli.store.session_file import (
    MAX_FILE,
    NAME,
    SCHEMA,
    Session,
    SessionError,
    SessionReadOnly,
    StoredMessage,
    check_name,
    migrate,
    now,
    title_from,
)

# What the rest of gptcli imports from here; the file format lives in store/session_file.py.
__all__ = [
    "NAME",
    "SCHEMA",
    "Session",
    "SessionError",
    "SessionReadOnly",
    "SessionStore",
    "StoredMessage",
    "check_name",
    "new_session_name",
    "title_from",
]

_T = TypeVar("_T")


def index_entry(session: Session) -> Entry:
    return Entry(
        title=session.title,
        model=session.model_name,
        turns=session.turns,
        updated=session.updated,
        text="\n".join(m.content for m in session.messages),
    )


def _parse_for_index(data: bytes, name: str) -> Entry:
    return index_entry(migrate(Session.from_json(data, name)))


Note = Callable[[str], None]


@dataclass(frozen=True)
class SessionSummary:
    name: str
    title: str
    model: str
    turns: int
    updated: str
    path: Path


class SessionStore:
    """The sessions directory: ``<data dir>/sessions``.

    ``note`` hears, in one line, why listing or search had to read every file.
    ``warn`` hears, one line per file, of each corrupt file that listing found and
    moved aside (as loading does); without it, listing leaves such files alone.
    """

    def __init__(self, data_dir: Path, note: Note | None = None, warn: Note | None = None) -> None:
        self.directory = data_dir / "sessions"
        self.note = note
        self.warn = warn
        self.index = SessionIndex(self.directory, lambda n: bool(NAME.match(n)), _parse_for_index)

    @property
    def blobs(self) -> BlobStore:
        """Where the sessions' attachments are kept."""
        return BlobStore(self.directory.parent)

    def path(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.json"

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        from filelock import FileLock, Timeout

        path = self.path(name)
        ensure_private_dir(self.directory)
        lock_path = self.directory / f".{name}.lock"
        held = False
        try:
            with FileLock(str(lock_path), timeout=30, mode=0o600):
                held = True
                yield path
        except Timeout:
            raise SessionError(f"session {name!r} is locked by another process") from None
        finally:
            if held and not path.exists():  # removed, renamed or moved aside: its lock too
                lock_path.unlink(missing_ok=True)

    def _read(self, path: Path, name: str) -> Session:
        try:
            stat = path.stat()
            if stat.st_size > MAX_FILE:
                raise SessionError(f"session file {path} is larger than {MAX_FILE} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise SessionError(f"no session named {name!r} (see gptcli sessions list)") from None
        except OSError as exc:
            raise SessionError(f"cannot read session {path}: {exc.strerror}") from None
        try:
            session = Session.from_json(data, name)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            raise SessionError(
                f"session file {path} is corrupt ({exc}); moved aside to {aside.name}"
            ) from None
        return migrate(session)

    def _must_exist(self, name: str) -> None:
        """Refuse a missing session before taking its lock: a question creates no file."""
        if not self.path(name).exists():
            raise SessionError(f"no session named {name!r} (see gptcli sessions list)")

    def load(self, name: str) -> Session:
        self._must_exist(name)
        with self._locked(name) as path:
            return self._read(path, name)

    def create(self, name: str, system: str | None = None) -> Session:
        with self._locked(name) as path:
            if path.exists():
                raise SessionError(f"session {name!r} already exists")
            session = Session(name=name, system=system)
            write_private_file(path, session.to_json())
            self._record(session)
            return session

    def update(self, name: str, change: Callable[[Session], None], create: bool = False) -> Session:
        """Apply ``change`` to the latest version on disk, under the lock, atomically."""
        with self._locked(name) as path:
            session = Session(name=name) if create and not path.exists() else self._read(path, name)
            if session.schema > SCHEMA:
                raise SessionReadOnly(
                    f"session {name!r} was written by a newer gptcli (schema {session.schema}); "
                    "it is read-only here"
                )
            change(session)
            session.updated = now()
            write_private_file(path, session.to_json())
            self._record(session)
            return session

    def _record(self, session: Session) -> None:
        """Bring the index up to date with a file just written; never fails the save."""
        # On failure the next read sees the file's new size and time and re-reads it.
        with suppress(IndexUnavailable, OSError):
            self.index.record(session.name, index_entry(session))

    def _forget(self, name: str) -> None:
        with suppress(IndexUnavailable, OSError):
            self.index.forget(name)

    def _from_index(self, use: Callable[[], _T]) -> _T | None:
        """``use()`` on the index, again if it was corrupt and thrown away; None: read the files."""
        for attempt in (1, 2):
            try:
                return use()
            except IndexUnavailable as exc:
                if exc.retry and attempt == 1:
                    continue
                if self.note is not None:
                    self.note(f"(session index unusable: {exc.reason}; reading every file)")
                return None
        return None

    def _scan(self, unreadable: list[str] | None = None) -> Iterator[Session]:
        for path in self.directory.glob("*.json"):
            name = path.name.removesuffix(".json")
            if not NAME.match(name):
                continue
            try:
                yield Session.from_json(path.read_bytes(), name)
            except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
                if unreadable is not None:
                    unreadable.append(name)
            except OSError:
                continue

    def _set_aside(self, names: list[str]) -> None:
        """Report each corrupt file and move it aside, as loading it would."""
        if self.warn is None:
            return
        for name in dict.fromkeys(names):
            try:
                with self._locked(name) as path:
                    if path.exists():
                        self._read(path, name)  # a file rewritten since it was seen is kept
            except SessionError as exc:
                self.warn(exc.message)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        """Sessions whose title or messages hold every word (or "quoted phrase") of ``text``."""
        if not self.directory.is_dir() or not query_terms(text):
            return []
        hits = self._from_index(lambda: self.index.search(text, limit))
        if hits is not None:
            return hits
        terms = [t.lower() for t in query_terms(text)]
        found = []
        for session in self._scan():
            body = session.title + "\n" + "\n".join(m.content for m in session.messages)
            lowered = body.lower()
            if all(t in lowered for t in terms):
                count = sum(lowered.count(t) for t in terms)
                snippet = snippet_of(body, terms)
                found.append(Hit(session.name, session.title, session.updated, snippet, -count))
        return sorted(found, key=lambda h: (h.rank, h.name))[:limit]

    def list(self) -> list[SessionSummary]:
        """Every readable session, most recently updated first."""
        if not self.directory.is_dir():
            return []
        unreadable: list[str] = []
        rows = self._from_index(lambda: self.index.rows(unreadable))
        if rows is not None:
            self._set_aside(unreadable)
            return [
                SessionSummary(r.name, r.title, r.model, r.turns, r.updated, self.path(r.name))
                for r in rows
            ]
        summaries = [
            SessionSummary(s.name, s.title, s.model_name, s.turns, s.updated, self.path(s.name))
            for s in self._scan(unreadable)
        ]
        self._set_aside(unreadable)
        return sorted(summaries, key=lambda s: s.updated, reverse=True)

    def most_recent(self) -> str | None:
        found = self.list()
        return found[0].name if found else None

    def remove(self, name: str) -> None:
        """Delete a session, its snapshot, and the attachments no other session uses."""
        self._must_exist(name)
        with self._locked(name) as path:
            if not path.exists():
                raise SessionError(f"no session named {name!r}")
            attached = self._attachments_of(path, name)
            path.unlink()
            self._forget(name)
            for extra in self.directory.glob(f"{name}.kv"):
                extra.unlink(missing_ok=True)
        if attached:
            self._remove_unused(attached)

    def _attachments_of(self, path: Path, name: str) -> set[str]:
        try:
            return Session.from_json(path.read_bytes(), name).attachment_hashes
        except (OSError, ValueError, TypeError, UnicodeDecodeError, RecursionError):
            return set()

    def _remove_unused(self, candidates: set[str]) -> None:
        """Remove the attachments among ``candidates`` that no session references; a
        session that cannot be read keeps them all (it may reference them)."""
        blobs = self.blobs
        with blobs.locked():
            unreadable: list[str] = []
            used: set[str] = set()
            for session in self._scan(unreadable):
                used |= session.attachment_hashes
            if not unreadable:
                blobs.remove_unused(candidates, used)

    def rename(self, old: str, new: str) -> None:
        check_name(new)
        self._must_exist(old)
        with self._locked(old) as path, self._locked(new) as target:
            if not path.exists():
                raise SessionError(f"no session named {old!r}")
            if target.exists():
                raise SessionError(f"a session named {new!r} already exists")
            session = self._read(path, old)
            session.name = new
            write_private_file(target, session.to_json())
            self._record(session)
            path.unlink()
            self._forget(old)
            snapshot = self.directory / f"{old}.kv"
            if snapshot.exists():
                os.replace(snapshot, self.directory / f"{new}.kv")


def new_session_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()

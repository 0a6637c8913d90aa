"""Sessions on disk: one JSON file per conversation, versioned, atomic and locked.

Every change is a read-modify-write under an exclusive file lock, written to a
temporary file, fsynced and renamed over the old one: a crash at any moment
leaves the previous or the new version, and two processes appending to one
session lose nothing. A file that does not parse is moved aside as
``<name>.json.corrupt-<time>``, never overwritten. A file from a newer schema
is read but never written.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from gptcli.errors import GptcliError, UsageError
from gptcli.parsing import loads_json
from gptcli.paths import ensure_private_dir, write_private_file
from gptcli.store.blobs import BlobStore
from gptcli.store.index import Entry, Hit, IndexUnavailable, SessionIndex, query_terms, snippet_of

# 2: a user message may reference attachments (stored once each, see store/blobs.py).
SCHEMA = 2
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FILE = 256 * 1024 * 1024
_T = TypeVar("_T")


class SessionError(GptcliError):
    """A session cannot be found, read or written."""


class SessionReadOnly(SessionError):
    """The session was written by a newer gptcli: it may be read, not changed."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def pack_text(text: str) -> str | dict[str, str]:
    """JSON would merge a lone high and low surrogate into one character; keep them apart."""
    if not _SURROGATE.search(text):
        return text
    return {
        "utf8_surrogatepass_b64": base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    }


def unpack_text(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("utf8_surrogatepass_b64"), str):
        return base64.b64decode(value["utf8_surrogatepass_b64"]).decode("utf-8", "surrogatepass")
    return value


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_name(name: str) -> str:
    """A user-supplied session name that cannot leave the sessions directory."""
    if not NAME.match(name) or name.endswith(".json"):
        raise UsageError(
            f"invalid session name {name!r}: use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class StoredMessage:
    """A message as saved: enough to show it again and to reproduce an answer."""

    role: str
    content: str
    time: str = field(default_factory=now)
    finish_reason: str | None = None
    model: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    seed: int | None = None
    usage: dict[str, int] | None = None
    backend: str | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    # A reasoning model's thinking before this answer; optional, so files from
    # before it (and readers that ignore it) stay valid at the same schema.
    thinking: str | None = None
    # Tools, optional in the same way: the calls an assistant message made
    # ([{"id", "name", "arguments"}], arguments as the model wrote them), and on
    # a "tool" message the call it answers and the tool's name.
    tool_calls: list[dict[str, str]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    # What was attached to a user message, each {"kind", "name", "bytes", "sha256",
    # "text_sha256"}: the content holds what followed the attachments; the message the
    # model saw is rebuilt from the stored texts (conversation/recorder.py).
    attachments: list[dict[str, Any]] | None = None

    @property
    def attachment_hashes(self) -> set[str]:
        return {
            str(a[key])
            for a in self.attachments or ()
            for key in ("sha256", "text_sha256")
            if isinstance(a.get(key), str)
        }

    @classmethod
    def from_json(cls, raw: object) -> StoredMessage:
        """A message from its saved form; optional facts of the wrong type are dropped."""
        if not isinstance(raw, dict):
            raise ValueError("a message is not a JSON object")
        known: dict[str, Any] = {
            k: v for k, v in raw.items() if k in _FACT_TYPES and isinstance(v, _FACT_TYPES[k])
        }
        known["content"] = unpack_text(raw.get("content"))
        thinking = unpack_text(raw.get("thinking"))
        known["thinking"] = thinking if isinstance(thinking, str) and thinking else None
        if not isinstance(raw.get("role"), str) or not isinstance(known.get("content"), str):
            raise ValueError("a message lacks its role or content")
        known["role"] = raw["role"]
        alternatives = known.get("alternatives", [])
        known["alternatives"] = [a for a in alternatives if isinstance(a, dict)]
        if "tool_calls" in known:
            calls = [c for c in known["tool_calls"] if _is_call(c)]
            known["tool_calls"] = calls or None
        if "attachments" in known:
            kept = [a for a in known["attachments"] if _is_attachment(a)]
            known["attachments"] = kept or None
        return cls(**known)


def _is_attachment(value: object) -> bool:
    return (
        isinstance(value, dict)
        and all(isinstance(value.get(key), str) for key in ("kind", "name", "sha256"))
        and isinstance(value.get("bytes"), int)
    )


def _is_call(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(key), str) for key in ("id", "name", "arguments")
    )


# The saved type of each optional fact of a message (JSON has no other types).
_FACT_TYPES: dict[str, type] = {
    "time": str,
    "finish_reason": str,
    "model": dict,
    "options": dict,
    "seed": int,
    "usage": dict,
    "backend": str,
    "alternatives": list,
    "tool_calls": list,
    "tool_call_id": str,
    "name": str,
    "attachments": list,
}


@dataclass
class Session:
    """A saved conversation."""

    name: str
    title: str = ""
    system: str | None = None
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    messages: list[StoredMessage] = field(default_factory=list)
    schema: int = SCHEMA

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    @property
    def attachment_hashes(self) -> set[str]:
        return {digest for m in self.messages for digest in m.attachment_hashes}

    @property
    def model_name(self) -> str:
        answers = [m for m in self.messages if m.role == "assistant" and m.model]
        return str(answers[-1].model.get("name", "")) if answers and answers[-1].model else ""

    def to_json(self) -> bytes:
        body = {
            "schema": self.schema,
            "name": self.name,
            "title": pack_text(self.title),
            "system": pack_text(self.system) if self.system is not None else None,
            "created": self.created,
            "updated": self.updated,
            "messages": [
                {
                    k: pack_text(v) if k in ("content", "thinking") else v
                    for k, v in asdict(m).items()
                    if v not in (None, [])
                }
                for m in self.messages
            ],
        }
        # ensure_ascii keeps lone surrogates and control characters representable.
        return (json.dumps(body, ensure_ascii=True, indent=1) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, data: bytes, name: str) -> Session:
        raw = loads_json(data.decode("utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise ValueError("not a gptcli session")
        schema = raw.get("schema")
        if not isinstance(schema, int) or schema < 1:
            raise ValueError("no schema version")
        return cls(
            name=name,
            title=str(unpack_text(raw.get("title")) or ""),
            system=system if isinstance(system := unpack_text(raw.get("system")), str) else None,
            created=str(raw.get("created") or now()),
            updated=str(raw.get("updated") or now()),
            messages=[StoredMessage.from_json(m) for m in raw["messages"]],
            schema=schema,
        )


def _v1_to_v2(session: Session) -> None:
    """Schema 2 added attachments to user messages; a schema-1 file has none."""


# MIGRATIONS[n - 1] brings schema n to n + 1.
MIGRATIONS: list[Callable[[Session], None]] = [_v1_to_v2]


def migrate(session: Session) -> Session:
    """Bring an older schema up to date, one version at a time (newer ones are left as
    they are: they are read-only here)."""
    while session.schema < SCHEMA:
        MIGRATIONS[session.schema - 1](session)
        session.schema += 1
    return session


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59] + "…"


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
        try:
            with FileLock(str(lock_path), timeout=30, mode=0o600):
                yield path
        except Timeout:
            raise SessionError(f"session {name!r} is locked by another process") from None

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
        (self.directory / f".{name}.lock").unlink(missing_ok=True)
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
        (self.directory / f".{old}.lock").unlink(missing_ok=True)


def new_session_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()

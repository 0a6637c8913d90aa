"""What a session file holds: its messages and their facts, its schema and migrations."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from gptcli.errors import GptcliError, UsageError
from gptcli.parsing import loads_json

# 2: a user message may reference attachments (stored once each, see store/blobs.py).
SCHEMA = 2
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FILE = 256 * 1024 * 1024


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
    # "text_sha256"} and, for a PDF shown as page images, "media": [{"at", "page", "name",
    # "sha256", "format"}] (where each image stands in the text): the content holds what
    # followed the attachments; the message the model saw is rebuilt from the stored
    # texts and images (conversation/recorder.py).
    attachments: list[dict[str, Any]] | None = None

    @property
    def attachment_hashes(self) -> set[str]:
        found = {
            str(a[key])
            for a in self.attachments or ()
            for key in ("sha256", "text_sha256")
            if isinstance(a.get(key), str)
        }
        found.update(str(m["sha256"]) for a in self.attachments or () for m in a.get("media") or ())
        return found

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
        and _is_media_list(value.get("media"))
    )


def _is_media_list(value: object) -> bool:
    """A PDF's page images as a session file keeps them (absent for other attachments)."""
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("sha256"), str)
            and isinstance(m.get("name"), str)
            and isinstance(m.get("at"), int)
            and not isinstance(m.get("at"), bool)
            for m in value
        )
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

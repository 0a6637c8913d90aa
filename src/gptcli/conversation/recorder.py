"""Recording a conversation into the session store as it happens.

The user's message is saved before the answer starts and the answer when it
ends (interrupted ones included, marked so). If the disk refuses (full,
read-only, a newer schema), the user is warned once and the conversation goes
on in memory; what was saved before stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gptcli.attachments.attached import (
    MEDIA_KINDS,
    Attached,
    AttachedKind,
    attachment_block,
    with_attachments,
)
from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend, Finished, Message, ToolCall
from gptcli.errors import GptcliError
from gptcli.media import MediaItem, marked, media_marker
from gptcli.store.blobs import BlobStore
from gptcli.store.sessions import (
    Session,
    SessionError,
    SessionReadOnly,
    SessionStore,
    StoredMessage,
    title_from,
)

_KINDS: dict[str, AttachedKind] = {"text": "text", "pdf": "pdf", "folder": "folder", "url": "url"}


def conversation_of(
    session: Session,
    system: str | None = None,
    blobs: BlobStore | None = None,
    warn: Callable[[str], None] | None = None,
) -> Conversation:
    """The in-memory conversation a saved session continues; a user message's attachments
    are read back from ``blobs`` (one whose copy is gone is named in a ``warn`` line and
    stands as a note that it is missing)."""
    missing: list[str] = []
    messages = [
        message_of(m, blobs, missing)
        for m in session.messages
        if m.role in ("user", "assistant", "tool")
    ]
    if missing and warn is not None:
        warn(
            f"session {session.name!r}: the stored copy of {', '.join(missing)} is missing; "
            "the conversation goes on without it"
        )
    return Conversation(system=system if system is not None else session.system, messages=messages)


def message_of(
    stored: StoredMessage, blobs: BlobStore | None = None, missing: list[str] | None = None
) -> Message:
    if stored.role == "user":
        return Message("user", user_text(stored, blobs, missing))
    if stored.role == "tool":
        return Message("tool", stored.content, tool_call_id=stored.tool_call_id, name=stored.name)
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in stored.tool_calls or ())
    return Message("assistant", stored.content, tool_calls=calls)


def user_text(
    stored: StoredMessage, blobs: BlobStore | None, missing: list[str] | None = None
) -> str:
    """A user message as the model saw it: its attachments' texts, then its content."""
    if not stored.attachments:
        return stored.content
    blocks = []
    for attached in stored.attachments:
        name, kind = str(attached["name"]), str(attached["kind"])
        digest = attached.get("text_sha256") or attached["sha256"]
        data = blobs.get(str(digest)) if blobs is not None else None
        if data is None:
            if missing is not None:
                missing.append(name)
            text = f"(the attachment {name} is missing: its stored copy was removed)"
            kind = "missing"  # a folder's placeholder gets a header too
        elif kind in MEDIA_KINDS:  # the model sees the image or sound again
            item = MediaItem(kind, str(attached.get("format", "")), name, data)  # type: ignore[arg-type]
            text = media_marker(item)
        else:
            text = _with_media(data.decode("utf-8", "surrogatepass"), attached, blobs, missing)
        blocks.append(attachment_block(kind, name, text))
    return with_attachments(blocks, stored.content)


def _with_media(
    text: str, record: dict[str, Any], blobs: BlobStore | None, missing: list[str] | None
) -> str:
    """A stored text with its images (a PDF's pages) back where they stood; one whose copy
    is gone is a note in its place, and named in ``missing``."""
    placed: list[tuple[int, MediaItem | str]] = []
    for each in record.get("media") or ():
        name = str(each["name"])
        data = blobs.get(str(each["sha256"])) if blobs is not None else None
        if data is None:
            if missing is not None:
                missing.append(name)
            note = f"(the image {name} is missing: its stored copy was removed)"
            placed.append((int(each["at"]), note))
            continue
        item = MediaItem("image", str(each.get("format", "png")), name, data)
        placed.append((int(each["at"]), item))
    return marked(text, placed) if placed else text


def last_attachments(session: Session, blobs: BlobStore) -> tuple[Attached, ...]:
    """What the session's last user message had attached, read back from ``blobs``, so that
    ``/edit`` of a resumed turn sends them again. Nothing when a stored copy is gone: the
    message is then edited whole, as the model saw it."""
    last = next((m for m in reversed(session.messages) if m.role == "user"), None)
    found = []
    for record in (last.attachments if last is not None else None) or ():
        attached = _attached_of(record, blobs)
        if attached is None:
            return ()
        found.append(attached)
    return tuple(found)


def _attached_of(record: dict[str, Any], blobs: BlobStore) -> Attached | None:
    name, kind = str(record["name"]), str(record["kind"])
    if kind in MEDIA_KINDS:  # its bytes are the image or sound; its text a marker for them
        data = blobs.get(str(record["sha256"]))
        if data is None:
            return None
        item = MediaItem(kind, str(record.get("format", "")), name, data)  # type: ignore[arg-type]
        return Attached(item.kind, name, media_marker(item), data, format=item.format)
    digest, original_digest = str(record.get("text_sha256") or record["sha256"]), record["sha256"]
    text = blobs.get(digest)
    original = blobs.get(str(original_digest)) if original_digest != digest else None
    if text is None or (original is None and original_digest != digest):
        return None
    images: list[str] = []
    decoded = _with_media(text.decode("utf-8", "surrogatepass"), record, blobs, images)
    if images:
        return None
    media = record.get("media") or ()
    pages = tuple(m["page"] if isinstance(m.get("page"), int) else 0 for m in media)
    return Attached(_KINDS.get(kind, "text"), name, decoded, original, page_images=pages)


def attachment_record(attached: Attached) -> dict[str, Any]:
    """What a turn keeps of an attachment (its bytes and text are stored beside it)."""
    if attached.media is not None:  # its text is a marker of this process only
        return {
            "kind": attached.kind,
            "name": attached.name,
            "bytes": attached.size,
            "sha256": attached.sha256,
            "format": attached.format,
        }
    record: dict[str, Any] = {
        "kind": attached.kind,
        "name": attached.name,
        "bytes": attached.size,
        "sha256": attached.sha256,
        "text_sha256": attached.text_sha256,
    }
    placed = attached.kept_text[1]
    if placed:  # a PDF's page images, each where it stands in the text kept
        record["media"] = [
            {
                "at": at,
                "page": page,
                "name": f"{attached.name} page {page}",
                "sha256": item.sha256,
                "format": "png",
            }
            for (at, item), page in zip(placed, attached.page_images, strict=True)
        ]
    return record


def stored_step(message: Message) -> StoredMessage:
    """An assistant message that called tools, or a tool's result, as saved."""
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return StoredMessage(
        message.role,
        message.content,
        finish_reason="tool_calls" if calls else None,
        tool_calls=calls or None,
        tool_call_id=message.tool_call_id,
        name=message.name,
    )


class SessionRecorder:
    """Saves the turns of one named session; never lets a disk problem end the chat."""

    def __init__(self, store: SessionStore, name: str, warn: Callable[[str], None]) -> None:
        self.store = store
        self.name = name
        self._warn = warn
        self.failed = False

    def _apply(self, change: Callable[[Session], None]) -> None:
        if self.failed:
            return
        try:
            self.store.update(self.name, change, create=True)
        except SessionReadOnly as exc:
            self.failed = True
            self._warn(f"{exc.message}; this conversation is not saved")
        except (SessionError, OSError) as exc:
            self._fail(exc.message if isinstance(exc, GptcliError) else (exc.strerror or str(exc)))

    def _fail(self, reason: str) -> None:
        if self.failed:
            return
        self.failed = True
        self._warn(
            f"cannot save session {self.name!r} ({reason}); the conversation goes on "
            "in memory and what was saved before is unchanged"
        )

    def system(self, text: str | None) -> None:
        def change(session: Session) -> None:
            session.system = text

        self._apply(change)

    def user(self, text: str, attached: Sequence[Attached] = ()) -> None:
        """Save the user's message; with attachments, ``text`` is what followed their
        blocks, and their bytes and texts are stored once each beside the sessions."""
        records = [attachment_record(a) for a in attached] or None

        def change(session: Session) -> None:
            if not session.title:
                shown = text.removeprefix("---").strip() or (attached[0].name if attached else "")
                session.title = title_from(shown)
            session.messages.append(StoredMessage("user", text, attachments=records))

        if not attached:
            self._apply(change)
            return
        blobs = self.store.blobs
        try:
            with blobs.locked():
                for item in attached:
                    blobs.put(item.data)
                    if item.media is None:
                        blobs.put(item.text_bytes)
                        for _, image in item.kept_text[1]:
                            blobs.put(image.data)
                self._apply(change)
        except (OSError, TimeoutError) as exc:
            self._fail(getattr(exc, "strerror", None) or str(exc))

    def answer(
        self,
        text: str,
        finished: Finished | None,
        model: dict[str, Any],
        options: SamplingOptions,
        replace_previous: bool = False,
        thinking: str = "",
        steps: Sequence[Message] = (),
    ) -> None:
        """Save an answer (with the thinking before it, if any, and ``steps``: its tool calls
        and their results); on a retry (``replace_previous``) the old one becomes an
        alternative and its steps are dropped."""
        saved_steps = [stored_step(m) for m in steps]
        message = StoredMessage(
            "assistant",
            text,
            finish_reason=finished.reason if finished else "interrupted",
            model=model,
            options={k: v for k, v in asdict(options).items() if k != "seed"},
            seed=finished.seed if finished else options.seed,
            usage={
                "prompt_tokens": finished.usage.prompt_tokens,
                "completion_tokens": finished.usage.completion_tokens,
            }
            if finished
            else None,
            backend=str(model.get("backend", "local")),
            thinking=thinking or None,
        )

        def change(session: Session) -> None:
            if replace_previous and session.messages and session.messages[-1].role == "assistant":
                old = session.messages.pop()
                message.alternatives = [*old.alternatives, _without_alternatives(old)]
                while session.messages and session.messages[-1].role != "user":
                    session.messages.pop()  # the old answer's tool calls and results
            session.messages.extend([*saved_steps, message])

        self._apply(change)

    def step(self, message: Message) -> None:
        """Save a message of an answer's tool use on its own (``/save`` of a chat so far)."""

        def change(session: Session) -> None:
            session.messages.append(stored_step(message))

        self._apply(change)

    def undo(self) -> None:
        def change(session: Session) -> None:
            for index in range(len(session.messages) - 1, -1, -1):
                if session.messages[index].role == "user":
                    del session.messages[index:]
                    return

        self._apply(change)


def _without_alternatives(message: StoredMessage) -> dict[str, Any]:
    data = {k: v for k, v in asdict(message).items() if v not in (None, [])}
    data.pop("alternatives", None)
    return data


def model_facts(path: Path, name: str, cache_dir: Path) -> dict[str, Any]:
    """The model an answer came from: name, file and sha256 (computed once, cached)."""
    from gptcli.models.registry import file_sha256

    try:
        digest: str | None = file_sha256(path, cache_dir)
    except OSError:
        digest = None
    return {"name": name, "file": path.name, "sha256": digest}


def answer_facts(backend: Backend, cache_dir: Path) -> dict[str, Any]:
    """What produced an answer: the model file and its sha256, or the server and profile."""
    own = abilities(backend).facts
    if own is not None:
        return dict(own.facts())
    details = backend.details
    return model_facts(Path(details.path), details.name, cache_dir)

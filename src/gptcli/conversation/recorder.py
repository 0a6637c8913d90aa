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

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend, Finished, Message, ToolCall
from gptcli.errors import GptcliError
from gptcli.store.sessions import (
    Session,
    SessionError,
    SessionReadOnly,
    SessionStore,
    StoredMessage,
    title_from,
)


def conversation_of(session: Session, system: str | None = None) -> Conversation:
    """The in-memory conversation a saved session continues."""
    messages = [message_of(m) for m in session.messages if m.role in ("user", "assistant", "tool")]
    return Conversation(system=system if system is not None else session.system, messages=messages)


def message_of(stored: StoredMessage) -> Message:
    if stored.role == "user":
        return Message("user", stored.content)
    if stored.role == "tool":
        return Message("tool", stored.content, tool_call_id=stored.tool_call_id, name=stored.name)
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in stored.tool_calls or ())
    return Message("assistant", stored.content, tool_calls=calls)


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
            self.failed = True
            reason = exc.message if isinstance(exc, GptcliError) else (exc.strerror or str(exc))
            self._warn(
                f"cannot save session {self.name!r} ({reason}); the conversation goes on "
                "in memory and what was saved before is unchanged"
            )

    def system(self, text: str | None) -> None:
        def change(session: Session) -> None:
            session.system = text

        self._apply(change)

    def user(self, text: str) -> None:
        def change(session: Session) -> None:
            if not session.title:
                session.title = title_from(text)
            session.messages.append(StoredMessage("user", text))

        self._apply(change)

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

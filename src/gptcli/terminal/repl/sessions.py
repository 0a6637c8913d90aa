"""The chat's session commands (/sessions, /search, /save, /rename, /load) and its KV snapshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptcli.answering.chat import ChatState, ChatTurns
from gptcli.conversation.chat import Conversation
from gptcli.conversation.recorder import SessionRecorder, conversation_of, last_attachments
from gptcli.errors import GptcliError
from gptcli.paths import AppPaths
from gptcli.store.sessions import SessionError, SessionStore, check_name, new_session_name
from gptcli.terminal.render import sanitize
from gptcli.wording import plural

if TYPE_CHECKING:
    from rich.console import Console

    from gptcli.attachments.attached import Attached


Note = Callable[[str, str], None]


@dataclass
class SessionKeeper:
    """Names, saves and loads the chat's session; keeps its KV cache beside it."""

    turns: ChatTurns
    paths: AppPaths
    console: Console
    note: Note
    save_turns: bool = True

    @property
    def state(self) -> ChatState:
        return self.turns.state

    @property
    def store(self) -> SessionStore:
        return SessionStore(self.paths.data_dir)

    def recorder(self, name: str) -> SessionRecorder:
        return SessionRecorder(self.store, name, lambda message: self.note(message, "red"))

    # -- KV snapshots --------------------------------------------------------

    def save_snapshot(self) -> None:
        self.turns.save_snapshot()

    def restore_snapshot(self) -> None:
        restored = self.turns.restore_snapshot()
        if restored:
            self.note(f"(restored the saved state: {restored} tokens need no processing)", "dim")

    # -- commands ------------------------------------------------------------

    def start_new(self) -> None:
        """A fresh conversation, under a new session name, keeping the system prompt."""
        state = self.state
        self.save_snapshot()
        state.conversation = Conversation(system=state.conversation.system)
        self.turns.resumed(())
        state.context_used = 0
        state.session_name = new_session_name()
        state.recorder = self.recorder(state.session_name) if self.save_turns else None

    def list(self) -> None:
        found = self.store.list()
        if not found:
            self.note("no saved sessions yet", "yellow")
        for summary in found[:30]:
            mark = "*" if summary.name == self.state.session_name else " "
            turns = plural(summary.turns, "turn") + ("" if summary.turns != 1 else " ")
            self.console.print(
                sanitize(f"{mark} {summary.name:<24} {turns:>9}  {summary.title}"),
                highlight=False,
                markup=False,
            )

    def search(self, text: str) -> None:
        """Sessions that mention ``text``, one line each, for /load."""
        from gptcli.terminal.render import hit_line

        if not text:
            self.note('usage: /search WORDS (all must occur; "a phrase" in quotes)', "yellow")
            return
        store = SessionStore(self.paths.data_dir, note=lambda line: self.note(line, "dim"))
        hits = store.search(text, 20)
        if not hits:
            self.note(f"no session mentions {text}", "yellow")
            return
        width = max(len(h.name) for h in hits)
        for hit in hits:
            self.console.print(hit_line(hit.name, hit.snippet, width), soft_wrap=True)
        self.note("(/load NAME continues one)", "dim")

    def save(self, name: str) -> None:
        """Name this session: rename its file, or write what was said so far."""
        state = self.state
        if not name:
            self.note(f"usage: /save NAME (this session is {state.session_name})", "yellow")
            return
        try:
            check_name(name)
            store = self.store
            if store.exists(state.session_name):
                store.rename(state.session_name, name)
            else:
                recorder = self.recorder(name)
                recorder.system(state.conversation.system)
                for message in state.conversation.messages:
                    if message.role == "user":
                        recorder.user(message.content)
                    elif message.role == "tool" or message.tool_calls:
                        recorder.step(message)
                    else:
                        recorder.answer(message.content, None, {}, state.settings.sampling)
        except GptcliError as exc:
            self.note(exc.message, "red")
            return
        state.session_name = name
        state.recorder = self.recorder(name)
        self.note(f"(session saved as {name})", "dim")

    def load(self, name: str) -> None:
        if not name:
            self.note("usage: /load NAME (see /sessions)", "yellow")
            return
        try:
            session = self.store.load(check_name(name))
        except GptcliError as exc:
            self.note(exc.message, "red")
            return
        self.save_snapshot()
        warn = lambda message: self.note(message, "yellow")  # noqa: E731
        self.state.conversation = conversation_of(session, None, self.store.blobs, warn)
        self.turns.resumed(last_attachments(session, self.store.blobs))
        self.state.session_name = name
        self.state.recorder = self.recorder(name) if self.save_turns else None
        self.state.context_used = 0
        self.note(f"(loaded session {name}: {plural(session.turns, 'turn')})", "dim")
        self.restore_snapshot()
        for message in session.messages[-2:]:
            who = "you" if message.role == "user" else "answer"
            self.console.print(f"[dim]{who}:[/dim] " + sanitize(message.content[:300]))


def resume(
    store: SessionStore, name: str | None, system: str | None, console: Console
) -> tuple[Conversation, tuple[Attached, ...]]:
    """The conversation saved as ``name``, or a new one (``name`` becomes its name), and
    what its last message had attached (for ``/edit``)."""
    conversation = Conversation(system=system)
    if name is None:
        return conversation, ()
    check_name(name)
    try:
        session = store.load(name)
    except SessionError as exc:
        if store.exists(name):
            raise
        if "corrupt" in exc.message:
            console.print(exc.message, style="red", markup=False)
        console.print(f"(new session {name})", style="dim", markup=False)
        return conversation, ()
    resumed = f"(resumed session {name}: {plural(session.turns, 'turn')})"
    console.print(resumed, style="dim", markup=False)

    def warn(message: str) -> None:
        console.print(message, style="yellow", markup=False)

    return (
        conversation_of(session, system, store.blobs, warn),
        last_attachments(session, store.blobs),
    )

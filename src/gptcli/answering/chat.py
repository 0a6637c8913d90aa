"""The chat's turns: each message fitted, recorded and answered the way `ask` answers one.

:class:`ChatTurns` knows no terminal: the REPL (terminal/repl/) reads lines, runs
commands and hands each answer a display; what happens to the conversation, the
session on disk and the KV snapshot happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gptcli.answering.ask import keep_prompt, record_answer
from gptcli.answering.attaching import (
    AttachmentInfo,
    after_attachments,
    counted,
    for_model,
    mentioned_paths,
    read_attachments,
)
from gptcli.answering.environment import Environment
from gptcli.answering.events import Display
from gptcli.answering.inputs import compose_prompt
from gptcli.answering.tools import ToolFlags, tool_use
from gptcli.attachments.attached import Attached
from gptcli.config import Settings, ToolSettings
from gptcli.conversation.chat import Conversation, Reply
from gptcli.conversation.context import check_policy, fit_conversation
from gptcli.conversation.kvstate import restore_state, save_state
from gptcli.conversation.recorder import SessionRecorder, last_attachments
from gptcli.conversation.toolloop import AnswerEvent, ToolResult, ToolUse
from gptcli.engine.base import Backend, Cancellation, Finished
from gptcli.errors import GptcliError
from gptcli.store.sessions import SessionStore

Start = Callable[[Cancellation, Reply], Iterator[AnswerEvent]]


@dataclass
class ChatState:
    """What the chat knows between turns."""

    settings: Settings
    backend: Backend
    conversation: Conversation
    last: Finished | None = None
    context_used: int = 0
    session_name: str = ""
    recorder: SessionRecorder | None = None
    last_thinking: str = ""
    tools: ToolUse | None = None  # the tools the model may call, if any
    last_tools: list[ToolResult] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # answers are checked against it (/set schema)
    pending: list[Attached] = field(default_factory=list)  # sent with the next message
    # What the user messages sent had attached, by their text as sent (for /edit).
    sent: dict[str, tuple[Attached, ...]] = field(default_factory=dict)
    # While the last exchange is being edited: the attachments it goes with again. The
    # exchange stays until the edited message is sent, so a cancelled edit changes nothing.
    editing: tuple[Attached, ...] | None = None


class ChatTurns:
    """Sends the chat's messages and keeps its session and KV state on disk."""

    def __init__(self, state: ChatState, env: Environment) -> None:
        self.state = state
        self.env = env
        self._tools = ExitStack()  # stops the MCP servers of the tools in use

    def use_tools(self, flags: ToolFlags, settings: ToolSettings) -> None:
        """Offer these tools from the next answer on (a server that cannot start is left out
        with a note); the tools before are stopped once the new ones are ready."""
        stack = ExitStack()
        try:
            tools = stack.enter_context(tool_use(flags, settings, self.env.asker, self.env.note))
        except BaseException:
            stack.close()
            raise
        self._tools.close()
        self._tools = stack
        self.state.tools = tools

    def stop_tools(self) -> None:
        self._tools.close()
        self.state.tools = None

    def attach(self, source: str) -> AttachmentInfo:
        """Read ``source`` now (AttachmentError if it cannot be); it goes with the next
        message."""
        attached, info = self._read(source)
        self.state.pending.append(attached)
        return info

    def _read(self, source: str) -> tuple[Attached, AttachmentInfo]:
        """``source`` as the model takes it; refused (AttachmentError) before it is kept
        anywhere."""
        (read,) = read_attachments([source], self.env)
        state = self.state
        (attached,) = for_model([read], state.backend, state.settings.pdf_pages, self.env.note)
        (info,) = counted([attached], state.backend)
        return attached, info

    def detach(self) -> list[Attached]:
        """Drop the attachments waiting for the next message; those dropped."""
        dropped, self.state.pending = self.state.pending, []
        return dropped

    def send(self, message: str, display: Display) -> Reply:
        """Answer ``message`` (with the pending attachments, and the files its ``@path``
        words name); raises ContextOverflowError (nothing sent, the attachments stay
        pending) when it cannot fit, KeyboardInterrupt when a summary to make room is
        interrupted. While an edit is under way (:meth:`edit`) the message replaces the
        last exchange, and goes with that exchange's attachments."""
        state = self.state
        editing, state.editing = state.editing, None
        again = editing or ()
        known = {item.name for item in again}  # sent again from their copies
        mentioned = [
            self._read(path)[0]
            for path in mentioned_paths(message)
            if Path(path).expanduser().name not in known
        ]  # all read before any is kept: a message refused leaves nothing attached
        state.pending.extend(mentioned)
        attached = (*again, *state.pending)
        head = "\n\n".join(item.block() for item in attached)
        text = compose_prompt(message, head) if attached else message
        self._fit(text, replacing=editing is not None)
        state.pending = []
        self._remember(text, attached)
        if state.recorder is not None:  # on disk before the answer starts
            if editing is not None:
                state.recorder.undo()
            state.recorder.user(after_attachments(text, attached), attached)
        tools, backend, sampling = state.tools, state.backend, state.settings.sampling
        return self._answer(
            lambda c, r: state.conversation.send(text, backend, sampling, c, r, tools), display
        )

    def _fit(self, text: str, replacing: bool) -> None:
        """Make room for ``text`` (after the last exchange, or in its place); when it cannot
        be made, the conversation is as it was."""
        state = self.state
        conversation = state.conversation
        before = (list(conversation.messages), conversation.summary)
        if replacing:
            conversation.undo()
        policy = check_policy(state.settings.on_overflow or "truncate")
        cancel = Cancellation()
        try:
            with self.env.cancelling(cancel):
                fit = fit_conversation(
                    conversation, text, state.backend, policy, state.settings.sampling, cancel
                )
        except BaseException:
            conversation.messages, conversation.summary = before
            raise
        if fit.notice():
            self.env.note(f"({fit.notice()})")

    def _remember(self, text: str, attached: tuple[Attached, ...]) -> None:
        """Keep what ``text`` had attached, for as long as the conversation has it."""
        state = self.state
        users = {m.content for m in state.conversation.messages if m.role == "user"}
        state.sent = {key: value for key, value in state.sent.items() if key in users}
        if attached:
            state.sent[text] = attached

    def edit(self) -> str | None:
        """Start editing the last exchange: the message as typed (None when there is none).
        Nothing changes until the edited message is sent (:meth:`send` replaces the
        exchange, in the session file too, so a resumed chat goes on from the edited
        message); :meth:`cancel_edit` leaves the exchange as it was."""
        state = self.state
        text = state.conversation.last_user_text()
        if text is None:
            return None
        attached = self._attachments_of(text)
        try:
            typed = after_attachments(text, attached)
        except ValueError:  # not the message they came with: edit it whole
            attached, typed = (), text
        state.editing = attached
        return typed.removeprefix("---\n\n") if attached else typed

    def cancel_edit(self) -> bool:
        """Leave the exchange being edited as it was; whether one was."""
        editing, self.state.editing = self.state.editing, None
        return editing is not None

    def resumed(self, attached: tuple[Attached, ...]) -> None:
        """The conversation is one read back (or a new one): ``attached`` is what its last
        message had attached."""
        state = self.state
        text = state.conversation.last_user_text()
        state.sent = {text: attached} if text is not None and attached else {}
        state.editing = None

    def _attachments_of(self, text: str) -> tuple[Attached, ...]:
        """What the user message ``text`` had attached: known since it was sent, or read
        back from the session file (a resumed chat's message)."""
        state = self.state
        found = state.sent.get(text)
        if found is not None or state.recorder is None:
            return found or ()
        store = state.recorder.store
        try:
            return last_attachments(store.load(state.recorder.name), store.blobs)
        except GptcliError:  # no file yet, or one that cannot be read: edit it whole
            return ()

    def retry(self, display: Display) -> Reply:
        """Answer the last message again; the earlier answer is kept as an alternative."""
        state = self.state
        backend, sampling = state.backend, state.settings.sampling
        return self._answer(
            lambda c, r: state.conversation.regenerate(backend, sampling, c, r, state.tools),
            display,
            retry=True,
        )

    def _answer(self, start: Start, display: Display, retry: bool = False) -> Reply:
        state = self.state
        cancel = Cancellation()
        reply = Reply()
        display.start(state.backend.details.name)
        try:
            with self.env.cancelling(cancel):
                for event in start(cancel, reply):
                    display.show(event)
        except KeyboardInterrupt:
            reply.finished = None
        finally:
            # Saved before the screen is settled: a terminal that is gone may refuse that.
            sampling = state.settings.sampling
            record_answer(state.recorder, state.backend, self.env, reply, sampling, retry)
            state.last_thinking = reply.thinking
            state.last_tools = reply.tool_results
            display.end()
        if reply.finished is not None:
            state.last = reply.finished
            state.context_used = reply.finished.usage.total_tokens
        return reply

    def problem(self, reply: Reply) -> str | None:
        """Why a finished answer does not conform to the chat's schema, if it does not."""
        from gptcli.conversation.structured import validate_answer

        finished = reply.finished
        if self.state.schema is None or finished is None or finished.reason != "stop":
            return None
        try:
            validate_answer(reply.text, self.state.schema)
        except GptcliError as exc:
            return exc.message
        return None

    def use_backend(self, backend: Backend, settings: Settings) -> None:
        """Switch models, keeping the conversation (its cache is built again as it is used)."""
        self.keep_prompt()
        self.state.backend.close()
        self.state.backend = backend
        self.state.settings = settings

    def set_sampling(self, **changes: Any) -> None:
        settings = self.state.settings
        self.state.settings = replace(settings, sampling=replace(settings.sampling, **changes))

    # -- KV snapshots ------------------------------------------------------

    def save_snapshot(self) -> None:
        """Keep the KV cache beside the session so a resume needs no re-processing."""
        state = self.state
        try:
            save_state(state.recorder, state.backend, self.env.paths.cache_dir, self.env.ending())
        except OSError as exc:
            self.env.notify(f"(could not save the session's state: {exc.strerror})", "dim")

    def keep_prompt(self, keep_answer: bool = False) -> None:
        """Write the first turn's prompt to the prompt cache, if it is not written yet:
        after that turn (``keep_answer``: the answer's cells stay for the next turn and go
        into the entry too), or when the chat is over with this model (its cells beyond
        that prompt go); not when ending on a signal."""
        if not self.env.ending():
            keep_prompt(self.state.backend, self.env, keep_answer)

    def restore_snapshot(self) -> int:
        """Load the session's KV snapshot, if it is valid for this model; tokens restored."""
        state = self.state
        store = SessionStore(self.env.paths.data_dir)
        return restore_state(store, state.session_name, state.backend, self.env.paths.cache_dir)

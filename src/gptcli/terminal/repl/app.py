"""The REPL loop: read a line, run a command or send a message, render the answer."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gptcli.answering.attaching import dropped_path
from gptcli.answering.chat import ChatState, ChatTurns
from gptcli.config import SAMPLING_KEYS, Settings, ThinkMode, check_setting
from gptcli.conversation.chat import Reply
from gptcli.conversation.context import check_policy
from gptcli.engine.base import Cancellation
from gptcli.errors import ContextOverflowError, GptcliError
from gptcli.models.names import PullReport
from gptcli.paths import AppPaths, ensure_private_dir
from gptcli.store.sessions import SessionStore, new_session_name
from gptcli.terminal.display import EventDisplay
from gptcli.terminal.environment import terminal_environment
from gptcli.terminal.interrupt import keys_unechoed, signals_cancel
from gptcli.terminal.paced import PacedRenderer
from gptcli.terminal.render import (
    MarkdownRenderer,
    PlainRenderer,
    Renderer,
    sanitize,
    warm_up,
)
from gptcli.terminal.repl import commands, views
from gptcli.terminal.repl.keys import repl_key_bindings, unwrap_block
from gptcli.terminal.repl.sessions import SessionKeeper, resume
from gptcli.terminal.repl.state import ReplOptions
from gptcli.terminal.thinking import Ignored, LiveThinking, PlainThinking, ThinkingSink
from gptcli.terminal.tools import ConsoleTools, show_tools

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import History
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output
    from rich.console import Console


def history_file(paths: AppPaths) -> Path:
    """The input history, private to the user: directory 0700, file 0600."""
    path = ensure_private_dir(paths.data_dir) / "history"
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


class Repl:
    """An interactive chat on one terminal; terminal I/O is injectable for tests."""

    def __init__(
        self,
        turns: ChatTurns,
        options: ReplOptions,
        console: Console,
        pt_input: Input | None = None,
        pt_output: Output | None = None,
    ) -> None:
        self.turns = turns
        self.state = turns.state
        self.paths = turns.env.paths
        self.options = options
        self.console = console
        self._session = self._make_session(pt_input, pt_output)
        self.sessions = SessionKeeper(turns, self.paths, console, self._note, options.save)
        self._prefill = ""

    # -- input ---------------------------------------------------------------

    def _make_session(self, pt_input: Input | None, pt_output: Output | None) -> PromptSession[str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        history: History = (
            FileHistory(str(history_file(self.paths)))
            if self.options.history
            else InMemoryHistory()
        )
        return PromptSession(
            message=[("class:prompt", ">>> ")],
            history=history,
            key_bindings=repl_key_bindings(),
            completer=commands.ChatCompleter(),
            complete_while_typing=True,
            enable_open_in_editor=True,
            enable_history_search=False,
            vi_mode=self.options.vi_mode,
            bottom_toolbar=self._toolbar,
            prompt_continuation=lambda width, line, soft: "... ".rjust(width),
            input=pt_input,
            output=pt_output,
        )

    def _toolbar(self) -> str:
        details = self.state.backend.details
        parts = [f" {details.name}", f"ctx {self.state.context_used}/{details.context_size}"]
        if self.state.session_name:
            saved = "" if self.state.recorder else " (not saved)"
            parts.append(f"session {self.state.session_name}{saved}")
        if self.state.last is not None:
            parts.append(f"{self.state.last.decode_tokens_per_second:.1f} tok/s")
        parts.append("/help")
        return " │ ".join(parts)

    def _read(self) -> str | None:
        """One message or command; None means exit."""
        interrupts = 0
        while True:
            default, self._prefill = self._prefill, ""
            try:
                return self._session.prompt(default=default)
            except KeyboardInterrupt:
                if self._cancel_edit():
                    continue  # one Ctrl-C cancels the edit; the chat goes on
                interrupts += 1
                if interrupts >= 2:
                    return None
                self.console.print("[dim](Ctrl-C again or Ctrl-D to exit)[/dim]")
            except EOFError:
                return None

    def _offered_as_attachment(self, line: str, parsed: tuple[str, str] | None) -> bool:
        """A path pasted or dropped on its own (an absolute one looks like a command that
        does not exist) is offered as an attachment; declined, it is sent as a message.
        True when the line was dealt with here."""
        dropped = dropped_path(line)
        if dropped is None or (parsed is not None and commands.find(parsed[0]) is not None):
            return False
        answer = views.yes_or_no(self._session, f"attach {dropped}? [Y/n] ")
        if answer:
            self._command("attach", dropped)
        elif answer is not None:
            self._send(line.strip())
        return True

    # -- loop ----------------------------------------------------------------

    def run(self) -> int:
        details = self.state.backend.details
        self.console.print(
            f"[bold]gptcli[/bold] · {details.name} ({details.quantization}, "
            f"{details.context_size} tokens of context). /help for commands, Ctrl-D to exit.",
            highlight=False,
        )
        while True:
            line = self._read()
            if line is None:
                return 0
            if not line.strip():
                self._cancel_edit()
                continue
            parsed = commands.parse(line)
            if parsed is not None or dropped_path(line) is not None:
                self._cancel_edit()  # a command instead of the edited message
            if self._offered_as_attachment(line, parsed):
                continue
            if parsed is None:
                text = unwrap_block(line)
                self._send(text[1:] if text.startswith("//") else text)
                continue
            if not self._command(*parsed):
                return 0

    def _renderer(self) -> Renderer:
        if self.options.plain:
            return PlainRenderer(self.console.file)
        # Markdown costs about 0.4 ms of CPU a token: rendered from a thread of its own,
        # so the decode loop only appends text (terminal/paced.py).
        return PacedRenderer(MarkdownRenderer(self.console))

    def _thinking_sink(self) -> ThinkingSink:
        if not self.options.plain:
            return LiveThinking(self.console, keep=self.options.show_thinking)
        return PlainThinking(self.console.file) if self.options.show_thinking else Ignored()

    def _note(self, message: str, style: str = "yellow") -> None:
        from rich.text import Text

        # Never markup: notes quote paths, names and model text.
        self.console.print(Text(sanitize(message), style=style))

    def _display(self) -> EventDisplay:
        renderer = self._renderer()
        settle = renderer.settle if isinstance(renderer, PacedRenderer) else renderer.finish
        return EventDisplay(renderer, self._thinking_sink(), ConsoleTools(self.console, settle))

    def _send(self, text: str) -> None:
        try:
            self._answered(lambda display: self.turns.send(text, display))
        except ContextOverflowError as exc:
            self._note(f"not sent: {exc.message}", "red")
        except KeyboardInterrupt:
            self._note("(interrupted while summarising; not sent)", "dim")

    def _answered(self, answer: Callable[[EventDisplay], Reply]) -> None:
        """Run one answer through a fresh display, then say how it ended."""
        try:
            with keys_unechoed():
                reply = answer(self._display())
        except ContextOverflowError:
            raise
        except GptcliError as exc:
            self._note(f"error: {exc.message}", "red")
            return
        problem = self.turns.problem(reply)
        if problem is not None:
            self._note(problem, "red")
        finished = reply.finished
        if finished is None or finished.reason == "interrupted":
            self._note("(interrupted)", "dim")
        elif finished.reason == "length":
            self._note(f"(answer cut at {finished.usage.completion_tokens} tokens)", "dim")
        # Once the answer and its notes are out: a chat killed later keeps its first prompt.
        self.turns.keep_prompt(keep_answer=True)

    # -- sessions (see gptcli.terminal.repl.sessions) ---------------------------------

    def save_snapshot(self) -> None:
        self.sessions.save_snapshot()

    def restore_snapshot(self) -> None:
        self.sessions.restore_snapshot()

    def _cmd_sessions(self, arg: str) -> None:
        self.sessions.list()

    def _cmd_search(self, arg: str) -> None:
        self.sessions.search(arg)

    def _cmd_save(self, arg: str) -> None:
        self.sessions.save(arg)

    _cmd_rename = _cmd_save

    def _cmd_load(self, arg: str) -> None:
        self.sessions.load(arg)

    # -- commands ------------------------------------------------------------

    def _command(self, name: str, arg: str) -> bool:
        """Run a slash command; False means exit. A command given the wrong arguments
        gets its usage line, and one that fails says why: the chat goes on."""
        command = commands.find(name)
        handler = getattr(self, f"_cmd_{name}", None)
        if command is None or (handler is None and name not in ("exit", "quit")):
            hint = commands.suggest(name)
            extra = f" Did you mean /{hint}?" if hint else ""
            self._note(f"unknown command /{name}.{extra} /help lists them.")
            return True
        usage = commands.misuse(command, arg)
        if usage is not None:
            self._note(usage)
            return True
        if handler is None:
            return False  # /exit, /quit
        try:
            handler(arg)
        except GptcliError as exc:
            self._note(exc.message, "red")
        return True

    def _cmd_help(self, arg: str) -> None:
        text = commands.help_text(self.console.width)
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _cmd_new(self, arg: str) -> None:
        dropped = self.turns.detach()
        self.sessions.start_new()
        names = ", ".join(item.name for item in dropped)
        self._note(f"(new conversation; dropped {names})" if names else "(new conversation)", "dim")

    def _cmd_clear(self, arg: str) -> None:
        self.console.clear()

    def _cmd_system(self, arg: str) -> None:
        conversation = self.state.conversation
        if not arg:
            shown = conversation.system or "(none: the model's template default applies)"
            self.console.print(shown, highlight=False, markup=False)
            return
        conversation.system = None if arg == "-" else arg
        if self.state.recorder is not None:
            self.state.recorder.system(conversation.system)
        self._note("(system prompt cleared)" if arg == "-" else "(system prompt set)", "dim")

    def _cmd_set(self, arg: str) -> None:
        name, _, raw = arg.partition(" ")
        name = name.replace("-", "_")
        if name == "on_overflow":
            try:
                policy = check_policy(raw.strip())
            except GptcliError as exc:
                self._note(exc.message, "red")
                return
            self.state.settings = replace(self.state.settings, on_overflow=policy)
            self._note(f"(on_overflow = {policy})", "dim")
            return
        if name == "schema":
            self._set_schema(raw.strip())
            return
        if name not in commands.SETTABLE or not raw.strip():
            self._note(f"usage: /set NAME VALUE, NAME one of {', '.join(commands.SETTABLE)}")
            return
        try:
            value = check_setting(name, raw.strip())
        except ValueError as exc:
            self._note(f"{name} {exc}", "red")
            return
        self.turns.set_sampling(**{name: value})
        self._note(f"({name} = {views.shown(name, value)})", "dim")

    def _set_schema(self, raw: str) -> None:
        from gptcli.conversation.structured import load_schema, schema_grammar

        grammar = None
        self.state.schema = None
        if raw and raw not in ("off", "none"):
            try:
                self.state.schema = load_schema(raw)
                grammar = schema_grammar(self.state.schema)
            except GptcliError as exc:
                self._note(exc.message, "red")
                return
        sampling = replace(self.state.settings.sampling, grammar=grammar)
        self.state.settings = replace(self.state.settings, sampling=sampling)
        self._note("(answers follow the schema)" if grammar else "(no schema)", "dim")

    def _cmd_think(self, arg: str) -> None:
        modes: dict[str, ThinkMode] = {"on": "on", "off": "off", "auto": "auto"}
        mode = modes.get(arg.strip().lower())
        if mode is None:
            self._note("usage: /think on|off|auto")
            return
        sampling = replace(self.state.settings.sampling, think=mode)
        self.state.settings = replace(self.state.settings, sampling=sampling)
        self._note(f"(think = {mode})", "dim")

    def _cmd_show(self, arg: str) -> None:
        what = arg.strip().lower()
        if what in ("", "thinking", "tools"):
            views.show(self.console, self.state, what)
        else:
            self._note("usage: /show [thinking|tools]")

    def _cmd_stats(self, arg: str) -> None:
        views.stats(self.console, self.state)

    def _cmd_tools(self, arg: str) -> None:
        show_tools(self.console, self.state.tools)

    def _cmd_model(self, arg: str) -> None:
        from gptcli.models.loader import open_backend

        settings = replace(self.state.settings, model=arg)
        cancel = Cancellation()
        try:
            with signals_cancel(cancel):
                report = PullReport(lambda m: self._note(f"note: {m}"), progress=True)
                backend, notices = open_backend(
                    settings, self.paths, cancel, self.options.debug, report=report
                )
        except GptcliError as exc:
            self._note(f"model not changed: {exc.message}", "red")
            return
        except KeyboardInterrupt:
            self._note("(model loading interrupted; model not changed)", "dim")
            return
        for notice in notices:
            self._note(f"note: {notice}")
        self.turns.use_backend(backend, settings)
        details = backend.details
        self._note(f"(now using {details.name}, {details.quantization})", "dim")

    def _cmd_role(self, arg: str) -> None:
        """A role's system prompt, options and tools (with the config's and -T's), and its
        model if it names one."""
        from gptcli.config import load_tool_settings
        from gptcli.conversation.roles import role_layer

        name, *pairs = arg.split() or [""]
        layer = role_layer(self.paths.config_dir, name, pairs)
        base = load_tool_settings(self.paths.config_file)
        enabled = (*base.enabled, *layer.get("tools", ()))
        self.turns.use_tools(self.options.tools, replace(base, enabled=enabled))
        self.turns.set_sampling(**{k: v for k, v in layer.items() if k in SAMPLING_KEYS})
        self.state.conversation.system = str(layer["system"])
        if self.state.recorder is not None:
            self.state.recorder.system(self.state.conversation.system)
        if "model" in layer and layer["model"] != self.state.settings.model:
            self._cmd_model(str(layer["model"]))
        tools = f", tools {', '.join(layer['tools'])}" if layer.get("tools") else ""
        self._note(f"(role {name}: system prompt and options set{tools})", "dim")

    def _cmd_retry(self, arg: str) -> None:
        state = self.state
        if state.conversation.last_user_text() is None:
            self._note("nothing to retry")
            return
        self._answered(self.turns.retry)

    def _cmd_attach(self, arg: str) -> None:
        if not arg:
            pending = self.state.pending
            names = ", ".join(item.name for item in pending) or "nothing"
            self._note(f"(attached to your next message: {names})", "dim")
            return
        info = self.turns.attach(arg)
        self._note(
            f"(attached {info.name}: {info.kind}, {info.bytes:,} bytes, {info.tokens:,} tokens; "
            "it goes with your next message)",
            "dim",
        )

    def _cmd_detach(self, arg: str) -> None:
        dropped = self.turns.detach()
        names = ", ".join(item.name for item in dropped)
        self._note(f"(dropped {names})" if names else "nothing is attached", "dim")

    def _cmd_undo(self, arg: str) -> None:
        if self.state.conversation.undo():
            if self.state.recorder is not None:
                self.state.recorder.undo()
            self._note("(dropped the last exchange)", "dim")
        else:
            self._note("nothing to undo")

    def _cmd_edit(self, arg: str) -> None:
        text = self.turns.edit()
        if text is None:
            self._note("nothing to edit")
            return
        self._prefill = text
        hint = "Ctrl-X Ctrl-E opens $EDITOR; Ctrl-C or an empty line keeps it as it was"
        self._note(f"(edit the last prompt and press Enter; {hint})", "dim")

    def _cancel_edit(self) -> bool:
        """Leave the exchange being edited as it was; whether one was."""
        if not self.turns.cancel_edit():
            return False
        self._note("(edit cancelled; the last exchange is kept)", "dim")
        return True

    def _cmd_copy(self, arg: str) -> None:
        self._note(*views.copy_answer(self.console, self.state.conversation.last_answer()))


def run_repl(settings: Settings, options: ReplOptions, console: Console | None = None) -> int:
    from rich.console import Console

    from gptcli.models.loader import open_backend

    console = console or Console(highlight=False)
    env = terminal_environment(debug=options.debug, notify=views.console_notes(console))
    store = SessionStore(env.paths.data_dir)
    name = options.resume or (store.most_recent() if options.continue_last else None)
    conversation, attached = resume(store, name, settings.system, console)
    if not options.plain:
        threading.Thread(target=warm_up, name="gptcli-warm-up", daemon=True).start()
    cancel = Cancellation()
    with signals_cancel(cancel):
        # Before the chat starts its notes go where the load's notices go: stderr.
        report = PullReport(_stderr_note, env.stderr_interactive)
        backend, notices = open_backend(settings, env.paths, cancel, options.debug, report=report)
    for notice in notices:
        sys.stderr.write(f"gptcli: note: {notice}\n")
    state = ChatState(settings, backend, conversation)
    state.session_name = name or new_session_name()
    repl = Repl(ChatTurns(state, env), options, console)
    repl.turns.resumed(attached)
    if options.save:
        state.recorder = repl.sessions.recorder(state.session_name)
    if name is not None:
        repl.restore_snapshot()
    try:
        for source in options.attach:
            info = repl.turns.attach(source)  # a refusal ends the chat before it starts
            repl._note(f"(attached {info.name}: {info.kind}, {info.tokens:,} tokens)", "dim")
        repl.turns.use_tools(options.tools, settings.tools)
        return repl.run()
    finally:
        repl.turns.stop_tools()
        repl.save_snapshot()
        repl.turns.keep_prompt()
        state.backend.close()


def _stderr_note(message: str) -> None:
    sys.stderr.write(f"gptcli: note: {message}\n")

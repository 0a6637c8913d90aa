"""Slash commands: their table, parsing, help text, completion and suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from gptcli.config import SAMPLING_KEYS


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    summary: str


COMMANDS: tuple[Command, ...] = (
    Command("help", "", "show this help"),
    Command("exit", "", "leave gptcli (also /quit, Ctrl-D)"),
    Command("quit", "", "leave gptcli"),
    Command("new", "", "start a fresh conversation (what is attached is dropped)"),
    Command("clear", "", "clear the screen"),
    Command("system", "[TEXT]", "show the system prompt, or set it to TEXT ('-' clears it)"),
    Command(
        "set",
        "NAME VALUE",
        f"set {', '.join(SAMPLING_KEYS)}, on_overflow (error|truncate|summarize) or "
        "schema (FILE|JSON|off)",
    ),
    Command(
        "show",
        "[thinking|tools]",
        "show the sampling options and facts about the model, or the last answer's thinking "
        "or tool calls in full",
    ),
    Command("tools", "", "list the tools the model may call (enable them with -T)"),
    Command("think", "on|off|auto", "a reasoning model's thinking: on, off or its default"),
    Command("model", "NAME|PATH", "switch to another model, keeping the conversation"),
    Command("role", "NAME [KEY=VALUE...]", "use a role: its system prompt and options"),
    Command(
        "attach",
        "[PATH|URL]",
        "attach a file, folder or URL to your next message (@path in a message does too); "
        "alone, list what is attached",
    ),
    Command("detach", "", "drop what is attached to your next message"),
    Command("retry", "", "answer the last prompt again"),
    Command("undo", "", "drop the last exchange"),
    Command(
        "edit", "", "edit the last prompt and send it again (Ctrl-C or an empty line keeps it)"
    ),
    Command("copy", "", "copy the last answer to the clipboard (OSC 52)"),
    Command("stats", "", "context used, speed and time to first token of the last answer"),
    Command("save", "NAME", "name this session (it is saved as you go)"),
    Command("rename", "NAME", "rename this session"),
    Command("load", "NAME", "continue a saved session"),
    Command("sessions", "", "list saved sessions"),
    Command("search", "WORDS", "find saved sessions that mention WORDS (then /load NAME)"),
)
NAMES = tuple(c.name for c in COMMANDS)
SETTABLE = (*SAMPLING_KEYS, "on_overflow", "schema")


def parse(line: str) -> tuple[str, str] | None:
    """``"/set temperature 0"`` -> ``("set", "temperature 0")``; plain text -> None."""
    stripped = line.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, arg = stripped[1:].partition(" ")
    return name.lower(), arg.strip()


def suggest(name: str) -> str | None:
    close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.5)
    if close:
        return close[0]
    starts = [n for n in NAMES if n.startswith(name)] if name else []
    return starts[0] if starts else None


def find(name: str) -> Command | None:
    return next((c for c in COMMANDS if c.name == name), None)


def misuse(command: Command, arg: str) -> str | None:
    """The usage note for ``/name arg`` when its arguments cannot be right: one given to a
    command that takes none, or none given to one that needs some."""
    usage = f"usage: /{command.name} {command.args}".rstrip()
    if not command.args and arg:
        return f"{usage} (it takes no arguments)"
    if command.args and not command.args.startswith("[") and not arg:
        return usage
    return None


def help_text(columns: int = 80) -> str:
    """The commands, their descriptions wrapped under the description column to fit
    ``columns``, and the keys."""
    import textwrap

    width = max(len(f"/{c.name} {c.args}".strip()) for c in COMMANDS)
    indent = " " * (width + 4)
    room = max(20, columns - len(indent) - 1)
    lines: list[str] = []
    for c in COMMANDS:
        wrapped = textwrap.wrap(c.summary, room) or [""]
        lines.append(f"  {f'/{c.name} {c.args}'.strip():<{width}}  {wrapped[0]}")
        lines.extend(indent + more for more in wrapped[1:])
    keys = [
        "",
        "Keys: Enter sends; Alt-Enter or Esc Enter adds a line; a message starting with",
        '""" continues until a line ending with """; Ctrl-X Ctrl-E edits in $EDITOR;',
        "Ctrl-R searches history; Ctrl-C stops an answer or clears the line; Ctrl-D exits.",
        "Start a message with // to send text that begins with a slash.",
    ]
    return "\n".join(["Commands:", *lines, *keys])


class SlashCompleter(Completer):
    """Completes command names after '/', and option names after '/set '."""

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if " " not in text:
            for name in NAMES:
                if name.startswith(text[1:]):
                    yield Completion(f"/{name}", start_position=-len(text))
            return
        command, _, rest = text.partition(" ")
        if command == "/set" and " " not in rest:
            for option in SETTABLE:
                if option.startswith(rest):
                    yield Completion(option, start_position=-len(rest))
        if command == "/attach" and "://" not in rest:
            yield from _paths(rest, complete_event)


def _paths(word: str, event: CompleteEvent) -> Iterable[Completion]:
    """Completions of ``word`` as a path (``~`` expanded), folders ending in '/'."""
    from prompt_toolkit.completion import PathCompleter

    completer = PathCompleter(expanduser=True)
    yield from completer.get_completions(Document(word, len(word)), event)


class ChatCompleter(SlashCompleter):
    """Slash commands, and paths after an ``@`` that starts a word of a message."""

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.startswith("/"):
            yield from super().get_completions(document, complete_event)
            return
        word = text.split()[-1] if text.strip() and not text[-1].isspace() else ""
        if word.startswith("@"):
            yield from _paths(word[1:], complete_event)

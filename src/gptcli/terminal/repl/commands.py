"""Slash commands: their table, parsing, help text, completion and suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    summary: str


COMMANDS: tuple[Command, ...] = (
    Command("help", "", "show this help"),
    Command("exit", "", "leave gptcli (also /quit, Ctrl-D)"),
    Command("quit", "", "leave gptcli"),
    Command("new", "", "start a fresh conversation"),
    Command("clear", "", "clear the screen"),
    Command("system", "[TEXT]", "show the system prompt, or set it to TEXT ('-' clears it)"),
    Command(
        "set",
        "NAME VALUE",
        "set temperature, top_p, top_k, min_p, repeat_penalty, max_tokens, seed, stop, "
        "on_overflow (error|truncate|summarize) or schema (FILE|JSON|off)",
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
    Command("retry", "", "answer the last prompt again"),
    Command("undo", "", "drop the last exchange"),
    Command("edit", "", "edit the last prompt and send it again"),
    Command("copy", "", "copy the last answer to the clipboard (OSC 52)"),
    Command("stats", "", "context used, speed and time to first token of the last answer"),
    Command("save", "NAME", "name this session (it is saved as you go)"),
    Command("rename", "NAME", "rename this session"),
    Command("load", "NAME", "continue a saved session"),
    Command("sessions", "", "list saved sessions"),
    Command("search", "WORDS", "find saved sessions that mention WORDS (then /load NAME)"),
)
NAMES = tuple(c.name for c in COMMANDS)
SETTABLE = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
    "seed",
    "stop",
    "on_overflow",
    "schema",
)


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


def help_text() -> str:
    width = max(len(f"/{c.name} {c.args}".strip()) for c in COMMANDS)
    lines = [f"  {f'/{c.name} {c.args}'.strip():<{width}}  {c.summary}" for c in COMMANDS]
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

"""What the chat shows on request: its options and model (/show), speed (/stats), notes,
the last answer for the clipboard (/copy); and the one question it asks in a line of its own
(yes or no)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from gptcli.answering.chat import ChatState
from gptcli.config import SAMPLING_KEYS
from gptcli.terminal.render import clipboard_sequence, sanitize
from gptcli.terminal.tools import show_results

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from rich.console import Console


def shown(key: str, value: object) -> str:
    """An option's value as a person would type it (``/show``, ``/set``)."""
    if value is None:
        return "random" if key == "seed" else "none"
    if isinstance(value, tuple):
        return " ".join(json.dumps(part, ensure_ascii=False) for part in value) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def show(console: Console, state: ChatState, what: str = "") -> None:
    """``/show``: the options and the model; ``/show thinking|tools``: the last answer's."""
    from rich.text import Text

    if what == "thinking":
        if not state.last_thinking:
            console.print(Text("(the last answer had no thinking)", style="dim"))
        else:
            console.print(Text(sanitize(state.last_thinking), style="dim italic"))
        return
    if what == "tools":
        show_results(console, state.last_tools)
        return
    details = state.backend.details
    sampling = state.settings.sampling
    rows = [
        ("model", details.name),
        ("file", details.path),
        ("architecture", details.architecture),
        ("quantisation", details.quantization),
        ("context", f"{details.context_size} (trained {details.trained_context or '?'})"),
        ("template", details.template_source),
        *_kv_row(details.kv_type, details.kv_bytes_per_token, details.context_size),
        ("media", _media(state)),
        ("on_overflow", state.settings.on_overflow or "truncate"),
        *((key, shown(key, getattr(sampling, key))) for key in SAMPLING_KEYS),
        ("schema", "on" if sampling.grammar else "off"),
    ]
    print_rows(console, rows)


def print_rows(console: Console, rows: list[tuple[str, str]]) -> None:
    """Names and values in two columns; a long value (a model's path) wraps under its column."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, Text(sanitize(value)))
    console.print(Padding(grid, (0, 0, 0, 2), expand=False))


def _kv_row(kv_type: str | None, per_token: int | None, window: int) -> list[tuple[str, str]]:
    """The KV cache's type and size, where the backend has one (not a server)."""
    if kv_type is None or not per_token:
        return []
    from gptcli.engine.kvcache import human_bytes

    full = human_bytes(per_token * window)
    return [("kv cache", f"{kv_type}, {human_bytes(per_token)} per token ({full} full)")]


def _media(state: ChatState) -> str:
    """What the model takes besides text (/attach, @path)."""
    from gptcli.engine.abilities import abilities

    facts = abilities(state.backend).media_facts
    if facts is None:
        return "text only (no projector: --mmproj FILE)"
    takes = [k for k in ("vision", "audio") if getattr(facts, k)] or ["nothing"]
    tokens = f", {facts.image_tokens} tokens per image" if facts.image_tokens else ""
    return f"{' and '.join(takes)}{tokens} ({facts.projector})"


def stats(console: Console, state: ChatState) -> None:
    """``/stats``: the context used and the last answer's speed."""
    details = state.backend.details
    last = state.last
    lines = [f"context: {state.context_used} of {details.context_size} tokens used"]
    if last is not None:
        lines += [
            f"last answer: {last.usage.completion_tokens} tokens, "
            f"{last.decode_tokens_per_second:.1f} tokens/s, finished: {last.reason}",
            f"time to first token: {last.timings.time_to_first_token * 1000:.0f} ms "
            f"({last.timings.prompt_tokens_evaluated} prompt tokens evaluated, "
            f"{last.timings.cached_tokens} reused from cache)",
        ]
    for line in lines:
        console.print(sanitize(line), highlight=False, markup=False)


def console_notes(console: Console) -> Callable[[str, str], None]:
    """Notes in the chat: one line on its console, in a style for their kind."""
    from rich.text import Text

    styles = {"note": "yellow", "warning": "red"}

    def notify(message: str, kind: str) -> None:
        # Never markup: notes quote paths, names and model text.
        console.print(Text(sanitize(message), style=styles.get(kind, kind)))

    return notify


def yes_or_no(session: PromptSession[str], question: str) -> bool | None:
    """A yes (Enter, y) or no to ``question`` on the chat's terminal; None for Ctrl-C."""
    from prompt_toolkit import PromptSession as Session

    asking: Session[str] = Session(
        message=sanitize(question), input=session.input, output=session.output
    )
    try:
        answer = asking.prompt()
    except (KeyboardInterrupt, EOFError):
        return None
    return answer.strip().lower() in ("", "y", "yes")


def copy_answer(console: Console, answer: str | None) -> tuple[str, str]:
    """Send ``answer`` to the terminal's clipboard (OSC 52): the note that says how it went,
    and its style."""
    if answer is None:
        return "nothing to copy yet", "yellow"
    if not console.is_terminal:
        return "cannot copy: the output is not a terminal", "yellow"
    console.file.write(clipboard_sequence(answer, inside_tmux=bool(os.environ.get("TMUX"))))
    console.file.flush()
    return (
        f"(sent {len(answer)} characters to the clipboard with OSC 52; terminals that do "
        "not allow clipboard writes ignore it)",
        "dim",
    )

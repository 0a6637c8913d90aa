"""Tool calls as people see them: a compact line per call and result, and the approval question.

On a terminal each call is one dim line (name and arguments) followed by the
first lines of its result; ``/show tools`` in the chat shows them whole. Into a
pipe nothing of it reaches stdout: the lines go to stderr when that is a
terminal. Everything a tool returns is data, so it is sanitised of terminal
escapes before it is shown.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Protocol

from gptcli.conversation.toolloop import Answer, Asker, ToolResult, ToolUse
from gptcli.engine.base import ToolCall
from gptcli.terminal.render import sanitize
from gptcli.tools.base import Tool

if TYPE_CHECKING:
    from rich.console import Console

PREVIEW_LINES = 3
ARGUMENTS_WIDTH = 120


class ToolDisplay(Protocol):
    """Shows the calls of an answer and their results as they happen."""

    def called(self, call: ToolCall) -> None: ...

    def result(self, result: ToolResult) -> None: ...


def call_line(call: ToolCall, width: int = ARGUMENTS_WIDTH) -> str:
    """``name {"arg": value}``, arguments compacted and cut to ``width`` characters."""
    try:
        arguments = json.dumps(json.loads(call.arguments), ensure_ascii=False)
    except ValueError:
        arguments = call.arguments
    arguments = " ".join(sanitize(arguments).split())
    if len(arguments) > width:
        arguments = arguments[: width - 1] + "…"
    return f"{call.name} {arguments}"


def result_lines(result: ToolResult, limit: int | None = PREVIEW_LINES) -> list[str]:
    """The result's first lines (all with no ``limit``), with a note of what is not shown."""
    lines = sanitize(result.text).splitlines() or ["(empty)"]
    if limit is None or len(lines) <= limit:
        return lines
    more = len(lines) - limit
    return [*lines[:limit], f"… {more} more line{'s' if more > 1 else ''} (/show tools)"]


def _status(result: ToolResult) -> str:
    if result.interrupted:
        return "interrupted"
    if result.refused:
        return "not run"
    return f"failed, {result.seconds:.1f} s" if result.error else f"{result.seconds:.1f} s"


class ConsoleTools:
    """Tool calls on a terminal, dim, between the parts of the answer."""

    def __init__(self, console: Console, before: Callable[[], None] = lambda: None) -> None:
        self._console = console
        self._before = before

    def called(self, call: ToolCall) -> None:
        from rich.text import Text

        self._before()  # the answer so far is printed before the call's line
        self._console.print(Text(f"⚙ {call_line(call)}", style="dim"))

    def result(self, result: ToolResult) -> None:
        from rich.text import Text

        style = "dim red" if result.error else "dim"
        lines = result_lines(result)
        self._console.print(Text(f"  ↳ {lines[0]}", style=style))
        for line in lines[1:]:
            self._console.print(Text(f"    {line}", style=style))
        self._console.print(Text(f"    ({_status(result)})", style="dim"))


class StreamTools:
    """Tool calls as plain lines on a stream (stderr, when stdout is a pipe)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def called(self, call: ToolCall) -> None:
        self._stream.write(f"gptcli: tool: {call_line(call)}\n")
        self._stream.flush()

    def result(self, result: ToolResult) -> None:
        first = result_lines(result, 1)[0]
        self._stream.write(f"gptcli: tool: {result.call.name} ({_status(result)}): {first}\n")
        self._stream.flush()


class Hidden:
    """Tool calls nobody watches (``--json`` lists them in its result instead)."""

    def called(self, call: ToolCall) -> None:
        pass

    def result(self, result: ToolResult) -> None:
        pass


QUESTION = "Allow it? [y]es / [n]o / [a]lways for this run: "


def terminal_asker(stream: IO[str]) -> Asker | None:
    """Asks on the terminal before a tool that may change something runs; None without one.

    The answer is read from stdin when that is the terminal, else from the
    controlling terminal (stdin may be a pipe into ``ask``), as sudo does.
    """
    if not _isatty(stream):
        return None
    opened: list[IO[str]] = []

    def source() -> IO[str] | None:
        # Opened at the first question, not for every run that might ask one.
        if _isatty(sys.stdin):
            return sys.stdin
        if not opened:
            try:
                opened.append(open("/dev/tty", encoding="utf-8"))  # noqa: SIM115
            except OSError:
                return None
        return opened[0]

    def ask(call: ToolCall, tool: Tool) -> Answer:
        stream.write(
            f"\ngptcli: {call.name} ({tool.source}) may change things. It was called with:\n"
        )
        stream.write(_full_arguments(call) + "\n")
        reader = source()
        return _answer_from(reader, stream) if reader is not None else "no"

    return ask


CHOICES: dict[str, Answer] = {"y": "yes", "yes": "yes", "n": "no", "no": "no", "": "no"}
CHOICES.update({"a": "always", "always": "always"})


def _answer_from(reader: IO[str], stream: IO[str]) -> Answer:
    """Ask until the answer is one of the choices; the end of input is a no."""
    while True:
        stream.write(QUESTION)
        stream.flush()
        line = reader.readline()
        if not line:
            stream.write("\n")
            return "no"
        choice = CHOICES.get(line.strip().lower())
        if choice is not None:
            return choice


def _full_arguments(call: ToolCall) -> str:
    try:
        text = json.dumps(json.loads(call.arguments), ensure_ascii=False, indent=2)
    except ValueError:
        text = call.arguments
    return "\n".join("  " + line for line in sanitize(text).splitlines())


def _isatty(stream: object) -> bool:
    try:
        return bool(stream is not None and stream.isatty())  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return False


def show_results(console: Console, results: Sequence[ToolResult]) -> None:
    """``/show tools``: each call of the last answer with its arguments and whole result."""
    from rich.text import Text

    if not results:
        console.print(Text("(the last answer called no tools)", style="dim"))
        return
    for result in results:
        console.print(Text(f"⚙ {result.call.name} ({_status(result)})", style="bold"))
        console.print(Text(_full_arguments(result.call), style="dim"))
        for line in result_lines(result, None):
            console.print(Text(f"  {line}"))


def show_tools(console: Console, use: ToolUse | None) -> None:
    """``/tools``: what the model may call, and which of them ask first."""
    from rich.text import Text

    specs = use.runner.specs() if use is not None else ()
    if use is None or not specs:
        console.print(Text("(no tools: start the chat with -T NAME; see gptcli tools list)", "dim"))
        return
    for spec in specs:
        tool = use.runner.get(spec.name)
        asks = tool is not None and not tool.read_only and not use.approval.everything
        mark = "asks first" if asks and spec.name not in use.approval.allowed else "runs"
        summary = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
        console.print(Text(f"  {spec.name:<16} {mark:<10} {sanitize(summary)}"))
    console.print(Text(f"  (choice {use.choice}, at most {use.max_rounds} rounds)", "dim"))

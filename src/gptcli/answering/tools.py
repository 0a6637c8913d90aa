"""The tools of one run: those the config or role enables plus -T and --functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gptcli.config import ToolSettings
from gptcli.conversation.toolloop import Approval, Asker, ToolUse
from gptcli.errors import UsageError

CHOICES = ("auto", "required", "none")


@dataclass(frozen=True)
class ToolFlags:
    """The tool options of ``ask`` and ``chat`` as given on the command line."""

    names: tuple[str, ...] = ()
    functions: tuple[Path, ...] = ()
    choice: str | None = None
    max_calls: int | None = None
    yes: bool = False
    approve: tuple[str, ...] = ()


@contextmanager
def tool_use(
    flags: ToolFlags,
    settings: ToolSettings,
    ask: Asker | None,
    notice: Callable[[str], None] | None = None,
) -> Iterator[ToolUse | None]:
    """The tools of this run (those the config or role enables, plus -T and --functions),
    ready to be called; MCP servers among them are stopped on the way out.

    With ``notice`` (the chat) an MCP server that cannot start is reported through it and
    left out, and the chat goes on; without, it is an error (``ask`` exits 2).
    """
    from gptcli.tools.box import Toolbox

    names = tuple(dict.fromkeys([*settings.enabled, *flags.names]))
    if flags.max_calls is not None and flags.max_calls < 1:
        raise UsageError("--max-tool-calls must be at least 1")
    if not names and not flags.functions:
        if flags.choice not in (None, "auto", "none"):
            raise UsageError(f"--tool-choice {flags.choice} needs tools: enable some with -T")
        yield None
        return
    with Toolbox.enable(names, flags.functions, settings, tolerant=notice is not None) as box:
        for message in box.notices:
            if notice is not None:
                notice(f"{message}; its tools are left out")
        choice = flags.choice or "auto"
        if choice not in CHOICES and box.get(choice) is None:
            known = ", ".join(spec.name for spec in box.specs())
            raise UsageError(
                f"--tool-choice {choice!r} is neither auto, required, none nor an enabled tool "
                f"({known})"
            )
        unknown = [name for name in flags.approve if box.get(name) is None]
        if unknown:
            raise UsageError(f"--approve {unknown[0]!r} names no enabled tool")
        approval = Approval(set(flags.approve), flags.yes, ask)
        yield ToolUse(box, choice, flags.max_calls or settings.max_calls, approval)

"""What the chat was started with."""

from __future__ import annotations

from dataclasses import dataclass, field

from gptcli.answering.tools import ToolFlags


@dataclass(frozen=True)
class ReplOptions:
    """How the REPL was started."""

    history: bool = True
    plain: bool = False
    vi_mode: bool = False
    debug: bool = False
    save: bool = True
    resume: str | None = None
    continue_last: bool = False
    show_thinking: bool = False
    tools: ToolFlags = field(default_factory=ToolFlags)
    attach: tuple[str, ...] = ()  # -a: sent with the first message

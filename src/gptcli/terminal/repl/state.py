"""What the chat was started with and what it knows between turns."""

from __future__ import annotations

from dataclasses import dataclass, field

from gptcli.config import Settings
from gptcli.conversation.chat import Conversation
from gptcli.conversation.recorder import SessionRecorder
from gptcli.conversation.toolloop import ToolResult, ToolUse
from gptcli.engine.base import Backend, Finished
from gptcli.terminal.tools import ToolFlags


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


@dataclass
class ReplState:
    """What the REPL knows between turns."""

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

"""What every tool is and returns, and the text hygiene applied to every result."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gptcli.engine.base import ToolSpec

# The names a model may call: what the OpenAI-style tool APIs and most chat templates accept.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BUILT_IN = "built-in"


@dataclass(frozen=True)
class ToolOutput:
    """What a call returned, ready to go into a `tool` message."""

    text: str
    error: bool = False  # the call failed; text says why in one line
    truncated: bool = False  # text was cut to the cap; text ends with a note saying what was cut


class Tool(Protocol):
    """Something the model can call: a spec, whether it changes anything, where it comes from."""

    @property
    def spec(self) -> ToolSpec: ...

    @property
    def read_only(self) -> bool:
        """False: the tool may change something, so a call needs the user's approval."""
        ...

    @property
    def source(self) -> str:
        """Where it comes from: "built-in", "functions: PATH" or "mcp: SERVER"."""
        ...

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput: ...


@dataclass(frozen=True)
class ToolInfo:
    """One line of `gptcli tools list`: a tool, or a source that failed with its error."""

    name: str  # what `-T` takes: a built-in's name, a function's, or mcp:SERVER/TOOL
    source: str
    read_only: bool
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # an MCP server that could not be started or listed


def failure(reason: str) -> ToolOutput:
    """An error output whose text is ``reason`` on one line."""
    return ToolOutput(one_line(reason), error=True)


def one_line(text: str) -> str:
    """``text`` with its lines joined, for messages that must stay one line."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip()) or "failed"


# CSI (ESC [ … final), OSC (ESC ] … BEL or ST), other string commands (DCS, SOS, PM, APC),
# then two-character escapes; the 8-bit C1 forms of CSI and OSC too. A result is shown in the
# user's terminal, so a tool (or a file it reads) must not be able to move the cursor, retitle
# the window or hide text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` without terminal escapes and control characters; newlines and tabs stay."""
    text = text.replace("\r\n", "\n")
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def cap_text(text: str, limit: int, what: str = "characters") -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, ending with a note saying how much was cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}\n[truncated: showed {limit} of {len(text)} {what}]", True

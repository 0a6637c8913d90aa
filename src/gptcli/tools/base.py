"""What a tool is to the rest of gptcli: a spec the model sees and a call that returns text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gptcli.engine.base import ToolSpec


@dataclass(frozen=True)
class ToolOutput:
    """What a call returned, ready to go into a `tool` message."""

    text: str
    error: bool = False
    truncated: bool = False


class Tool(Protocol):
    """A tool that can be offered to a model and called."""

    @property
    def spec(self) -> ToolSpec: ...

    @property
    def read_only(self) -> bool: ...

    @property
    def source(self) -> str: ...

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput: ...

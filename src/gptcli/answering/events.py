"""What the use cases hand to a display: an answer's events, and its end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gptcli.answering.attaching import AttachmentInfo
from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Reply
from gptcli.conversation.context import FitReport
from gptcli.conversation.toolloop import AnswerEvent


@dataclass(frozen=True)
class Answered:
    """An answer that is over (finished, cut or interrupted), with what its result reports."""

    reply: Reply
    model: str
    window: int
    sampling: SamplingOptions
    fit: FitReport | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. --chunked's parts

    @property
    def interrupted(self) -> bool:
        finished = self.reply.finished
        return finished is None or finished.reason == "interrupted"


class Display(Protocol):
    """Shows one answer as it happens: the front end decides how (terminal/display.py)."""

    def start(self, model: str) -> None:
        """The model is loaded and the answer is about to start."""
        ...

    def attached(self, info: AttachmentInfo) -> None:
        """An attachment of the question, with the tokens it takes (before the answer)."""
        ...

    def show(self, event: AnswerEvent) -> None: ...

    def end(self) -> None:
        """The stream is over (also after a failure): settle what is on screen."""
        ...

    def answered(self, result: Answered) -> None:
        """The answer is complete and checked: a result printed at the end goes out now."""
        ...

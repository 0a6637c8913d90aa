"""What a use case may touch of the world, passed in rather than reached for.

The front end builds one :class:`Environment` (terminal/environment.py does it for
the real terminal; tests build their own) and the use cases read input, write notes,
ask for approval and catch signals only through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import BinaryIO

from gptcli.conversation.toolloop import Asker
from gptcli.engine.base import Cancellation
from gptcli.models.names import PullReport
from gptcli.paths import AppPaths

Notify = Callable[[str, str], None]  # (message, kind): kind is "note", "warning" or a style


def _no_signals(cancel: Cancellation) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True)
class Environment:
    """Piped input, terminal facts, the data dirs, a clock and a person to ask.

    ``cancelling(cancel)`` is where a signal turns into ``cancel`` (the terminal's
    Ctrl-C, SIGTERM, a hang-up); ``ending`` says whether the process is ending on one.
    """

    paths: AppPaths
    notify: Notify
    stdin: BinaryIO | None = None  # piped input; None when stdin is the terminal or closed
    stderr_interactive: bool = False  # a person reads the notes (progress is worth showing)
    asker: Asker | None = None
    cancelling: Callable[[Cancellation], AbstractContextManager[None]] = _no_signals
    ending: Callable[[], bool] = lambda: False
    clock: Callable[[], float] = time.monotonic
    debug: bool = False

    def note(self, message: str) -> None:
        self.notify(message, "note")

    def pull_report(self) -> PullReport:
        """How a model downloaded on first use is announced: a note, and a bar for a person."""
        return PullReport(self.note, self.stderr_interactive)

    def warn(self, message: str) -> None:
        self.notify(message, "warning")

"""Showing a reply's thinking apart from its answer.

On a terminal the thinking streams dimmed in a few lines that are replaced,
when the answer starts, by one line ("thought for 4.1 s, 212 tokens"). Into a
pipe nothing of it is printed, unless asked for: then it goes to stderr, so
stdout still carries only the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol

from gptcli.terminal.render import PlainRenderer, sanitize

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

TAIL_LINES = 6


class ThinkingSink(Protocol):
    """Receives a reply's thinking piece by piece; ``end`` when the answer starts or stops."""

    def feed(self, text: str) -> None: ...

    def end(self) -> None: ...


def summary(seconds: float, pieces: int) -> str:
    return f"thought for {seconds:.1f} s, {pieces} tokens"


class Ignored:
    """Thinking nobody asked to see."""

    def feed(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


class Forwarded:
    """Each piece handed to a function (``--jsonl`` writes them as events)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def feed(self, text: str) -> None:
        self._write(text)

    def end(self) -> None:
        pass


class PlainThinking:
    """The thinking's exact text (sanitised) on a stream such as stderr, then a newline."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._plain = PlainRenderer(stream)

    def feed(self, text: str) -> None:
        self._plain.feed(text)

    def end(self) -> None:
        self._plain.finish()
        self._plain = PlainRenderer(self._stream)


class LiveThinking:
    """Dimmed thinking on a terminal; collapsed to one line, or kept whole with ``keep``."""

    def __init__(self, console: Console, keep: bool = False, fps: float = 5.0) -> None:
        self._console = console
        self._keep = keep
        self._fps = fps
        self._text = ""
        self._pieces = 0
        self._started: float | None = None
        self._drawn_at = 0.0
        self._live: Live | None = None

    def feed(self, text: str) -> None:
        from rich.live import Live

        if self._started is None:
            self._started = time.monotonic()
        self._pieces += 1
        self._text += sanitize(text)
        if self._live is None:
            self._live = Live(
                self._view(),
                console=self._console,
                auto_refresh=False,
                transient=True,
                vertical_overflow="crop",
            )
            self._live.start(refresh=True)
        elif time.monotonic() - self._drawn_at >= 1 / self._fps:
            self._live.update(self._view(), refresh=True)
        else:
            return
        self._drawn_at = time.monotonic()

    def _view(self) -> Text:
        from rich.text import Text

        lines = self._text.strip().splitlines()[-TAIL_LINES:]
        return Text("\n".join(lines), style="dim italic", no_wrap=False)

    def end(self) -> None:
        from rich.text import Text

        if self._started is None:
            return
        if self._live is not None:
            self._live.update("", refresh=False)
            self._live.stop()
            self._live = None
        seconds = time.monotonic() - self._started
        if self._keep:
            self._console.print(Text(self._text.strip(), style="dim italic"))
        self._console.print(Text(f"({summary(seconds, self._pieces)})", style="dim"))
        self._started = None
        self._text = ""
        self._pieces = 0

"""Turning a stream of token bytes into safe, whole-character text."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class Utf8Stream:
    """Decodes bytes fed in arbitrary pieces; a character split across pieces comes out whole."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        """The end of the stream. Bytes still held are the start of a character the answer
        was cut inside (by its token limit, say): they are withheld, not shown as U+FFFD."""
        self._decoder.reset()
        return ""


class StopMatcher:
    """Holds back text that could be the start of a stop string.

    ``feed`` returns the text that is safe to show and whether a stop string was
    reached; the stop string itself and anything after it are never shown.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            return out, True
        hold = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


class AnswerText:
    """Token pieces to answer text: whole UTF-8 characters, stop strings, no leading blanks."""

    def __init__(self, stop: Sequence[str]) -> None:
        self._utf8 = Utf8Stream()
        self._stops = StopMatcher(stop)
        self._at_start = True

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """The text now complete, and whether a stop string was reached."""
        text, stopped = self._stops.feed(self._utf8.feed(piece))
        return self._strip(text), stopped

    def flush(self) -> str:
        return self._strip(self._stops.feed(self._utf8.flush())[0] + self._stops.flush())

    def _strip(self, text: str) -> str:
        if self._at_start and text:
            text = text.lstrip()
            self._at_start = not text
        return text

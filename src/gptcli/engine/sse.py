"""Server-sent events, as the WHATWG HTML standard defines the ``text/event-stream`` format.

A stream is lines ended by CRLF, LF or CR. ``field: value`` lines build an event (one
space after the colon is dropped; ``data`` lines are joined with newlines; ``event``,
``id`` and ``retry`` are kept; other fields ignored), a line starting with ``:`` is a
comment, and a blank line dispatches the event. An event still open when the stream ends
is discarded, as the standard says.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event: its type (``message`` unless named), data, id and retry."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


def stream_lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of text that arrives in chunks; a CRLF split across chunks is one end."""
    pending = ""
    after_cr = False
    for chunk in chunks:
        if after_cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        after_cr = chunk.endswith("\r")
        pending += chunk
        lines = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def sse_events(chunks: Iterable[str]) -> Iterator[ServerEvent]:
    """The events of a ``text/event-stream`` body given as text chunks."""
    data: list[str] = []
    event, last_id, retry = "", None, None
    seen = False
    for line in stream_lines(chunks):
        if not line:
            if seen and data:
                yield ServerEvent("\n".join(data), event or "message", last_id, retry)
            data, event, retry, seen = [], "", None, False
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        seen = True
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)

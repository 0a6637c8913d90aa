"""Reading what the user pipes in and combining it with the prompt."""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from gptcli.errors import UsageError

STDIN_ONLY = "-"
WAIT_HINT_SECONDS = 2.0


@dataclass(frozen=True)
class StdinText:
    text: str
    warning: str | None = None


def decode_input(data: bytes, source: str = "stdin") -> StdinText:
    """Decode UTF-8 input; invalid bytes become U+FFFD with a warning, NUL bytes are refused."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UsageError(
            f"{source} contains a NUL byte at offset {nul}: it looks like binary data, not text"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return StdinText(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        return StdinText(
            text,
            f"{source} is not valid UTF-8 (first bad byte at offset {exc.start}); "
            "invalid bytes were replaced with U+FFFD",
        )


def read_stdin(stream: BinaryIO, on_wait: Callable[[], None] | None = None) -> StdinText:
    """Read all of ``stream``; call ``on_wait`` once if nothing arrives for a while."""
    if on_wait is not None:
        try:
            ready, _, _ = select.select([stream], [], [], WAIT_HINT_SECONDS)
        except (OSError, ValueError):
            ready = [stream]
        if not ready:
            on_wait()
    return decode_input(stream.read())


def compose_prompt(prompt: str | None, piped: str | None) -> str:
    """The user message for ``ask``: the piped text, then the instruction after a rule.

    Putting the document first and the instruction last is what models
    follow best for long inputs; the ``---`` line keeps the two apart.
    """
    if prompt == STDIN_ONLY:
        prompt = None
    piped = piped if piped and piped.strip() else None
    if prompt is not None and not prompt.strip():
        raise UsageError("the prompt is empty")
    if piped is None and prompt is None:
        raise UsageError("no input: stdin was empty")
    if piped is None:
        return prompt or ""
    if prompt is None:
        return piped
    return f"{piped.rstrip()}\n\n---\n\n{prompt}"


def stdin_is_interactive(fd: int = 0) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False

"""Reading what the user pipes in and combining it with the prompt."""

from __future__ import annotations

import codecs
import os
import select
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gptcli.attachments.attached import Attached
from gptcli.attachments.text import decode_text
from gptcli.engine.base import Cancellation
from gptcli.errors import UsageError

STDIN_ONLY = "-"
WAIT_HINT_SECONDS = 2.0
BLOCK = 64 * 1024  # bytes read, checked and decoded at a time
HELD_BLANK = 1024 * 1024  # blank text held back at most, to be dropped at an end as before


@dataclass(frozen=True)
class StdinText:
    text: str
    warning: str | None = None


def decode_input(data: bytes, source: str = "stdin") -> StdinText:
    """Decode UTF-8 input; invalid bytes become U+FFFD with a warning, NUL bytes are refused
    (the checks every attached text gets, attachments/text.py)."""
    warnings: list[str] = []
    text = decode_text(data, source, warnings.append)
    return StdinText(text, warnings[0] if warnings else None)


def text_blocks(
    stream: BinaryIO, source: str, on_warning: Callable[[str], None]
) -> Iterator[tuple[str, int]]:
    """``stream`` as (text, bytes read) block by block, with the checks of ``decode_input``.

    A NUL byte is refused when its block is read; the first invalid UTF-8 byte is
    reported once, at the same offset as a whole decode would give, and invalid
    bytes become U+FFFD as in a whole decode (a character split across two blocks
    is decoded whole).
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    read = fed = 0  # bytes read; bytes decoded (a leading BOM is neither decoded nor counted)
    while True:
        data = stream.read(BLOCK)
        final = not data
        nul = data.find(b"\x00")
        if nul >= 0:
            raise UsageError(
                f"{source} contains a NUL byte at offset {read + nul}: "
                "it looks like binary data, not text"
            )
        size = len(data)
        if read == 0 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        read += size
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            on_warning(
                f"{source} is not valid UTF-8 (first bad byte at offset "
                f"{fed - len(pending) + exc.start}); invalid bytes were replaced with U+FFFD"
            )
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            decoder.setstate((pending, 0))
            text = decoder.decode(data, final)
        fed += len(data)
        yield text, size
        if final:
            return


def _rstripped(blocks: Iterator[str]) -> Iterator[str]:
    """``blocks`` without trailing whitespace at the end of all of them."""
    held = ""
    for block in blocks:
        body = block.rstrip()
        if body:
            yield held + body
            held = block[len(body) :]
        else:
            held += block
            if len(held) > HELD_BLANK:  # only a pathological blank run is passed on
                yield held
                held = ""


def _unless_blank(blocks: Iterator[str]) -> Iterator[str]:
    """``blocks`` as they are, or nothing if they are whitespace only."""
    held = ""
    for block in blocks:
        held += block
        if held.strip() or len(held) > HELD_BLANK:
            yield held
            yield from blocks
            return


class Attachment:
    """What `ask` is given besides its prompt, as one text read block by block as it is used.

    The text is what reading everything at once gave: the attachments (``-a``, already
    read) each under its header, each file (``-f``) under a ``=== name ===`` line without
    its trailing whitespace, then stdin unless it is blank, separated by a blank line.
    Nothing of the files and stdin is kept once handed on, so memory does not grow with
    them.
    """

    def __init__(
        self,
        files: tuple[Path, ...],
        stdin: BinaryIO | None,
        on_warning: Callable[[str], None],
        cancel: Cancellation,
        attached: Sequence[Attached] = (),
    ) -> None:
        self.attached = tuple(attached)
        self._files = [(path, _open_text_file(path)) for path in files]
        self._stdin = stdin
        self._warn = on_warning
        self._cancel = cancel
        self._ahead: list[str] = []
        self._source = self._text()
        self.bytes_read = 0
        self.chars_read = 0  # of the text, with what was read ahead
        sizes = [_fstat(handle) for _, handle in self._files]
        if stdin is not None:
            sizes.append(_fstat(stdin))
        regular = all(s is not None and stat.S_ISREG(s.st_mode) for s in sizes)
        self.total_bytes: int | None = sum(s.st_size for s in sizes if s) if regular else None

    @property
    def empty(self) -> bool:
        return not self._files and self._stdin is None and not self.attached

    def read_ahead(self, chars: int, on_wait: Callable[[], None] | None = None) -> bool:
        """Read up to ``chars`` characters now; True if that was all of it."""
        if on_wait is not None and self._stdin is not None:
            _hint_if_silent(self._stdin, on_wait)
        held = sum(len(block) for block in self._ahead)
        for block in self._source:
            self._ahead.append(block)
            held += len(block)
            if held >= chars:
                return False
        return True

    def blocks(self) -> Iterator[str]:
        """The text, once: the attachments as they are now (a PDF's page images are added
        once the model has loaded), what was read ahead, then the rest as it is read."""
        for index, item in enumerate(self.attached):
            yield ("\n\n" if index else "") + item.block()
        while self._ahead:
            yield self._ahead.pop(0)
        yield from self._source

    def _read(self, stream: BinaryIO, source: str) -> Iterator[str]:
        blocks = text_blocks(stream, source, self._warn)
        while True:
            # Inside interrupting(), a Ctrl-C ends a read that waits on a silent pipe.
            with self._cancel.interrupting():
                item = next(blocks, None)
            if item is None:
                return
            text, size = item
            self.bytes_read += size
            self.chars_read += len(text)
            if text:
                yield text

    def _text(self) -> Iterator[str]:
        """The files and stdin, after the attachments (they are in memory already)."""
        separator = "\n\n" if self.attached else ""
        for path, handle in self._files:
            with handle:
                yield f"{separator}=== {path.name} ===\n"
                yield from _rstripped(self._read(handle, str(path)))
            separator = "\n\n"
        if self._stdin is not None:
            for index, block in enumerate(_unless_blank(self._read(self._stdin, "stdin"))):
                yield f"{separator}{block}" if index == 0 else block


def _open_text_file(path: Path) -> BinaryIO:
    try:
        if path.is_dir():
            raise UsageError(f"{path} is a directory, not a text file")
        return path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _fstat(stream: BinaryIO) -> os.stat_result | None:
    try:
        return os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None


def _hint_if_silent(stream: BinaryIO, on_wait: Callable[[], None]) -> None:
    try:
        ready, _, _ = select.select([stream], [], [], WAIT_HINT_SECONDS)
    except (OSError, ValueError):
        ready = [stream]
    if not ready:
        on_wait()


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

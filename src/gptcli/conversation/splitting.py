"""Splitting a long text into parts that fit a token limit, on paragraphs, then sentences.

Each part after the first starts with the end of the one before it, so a fact on
a boundary is seen whole; a streamed text is split one window at a time, so
memory holds a window and a part, never the whole document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from gptcli.engine.base import Cancellation

STREAM_WINDOW = 256 * 1024  # characters of a streamed document split into parts at a time

_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_Unit = tuple[str, int, bool]  # (text, tokens, starts a paragraph)


def split_text(text: str, count: Callable[[str], int], limit: int, overlap: int = 0) -> list[str]:
    """Split on paragraphs, then sentences, then words, into pieces of at most ``limit`` tokens.

    Each piece after the first starts with the end of the previous one (about
    ``overlap`` tokens of whole sentences) so facts on a boundary are seen whole.
    """
    return [chunk for chunk, _ in _pack(_units(text, count, limit), limit, overlap)]


def _units(text: str, count: Callable[[str], int], limit: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _PARAGRAPHS.split(text):
        if not paragraph.strip():
            continue
        size = count(paragraph)
        if size <= limit:
            units.append((paragraph, size, True))
            continue
        first = True
        for sentence in _SENTENCES.split(paragraph):
            size = count(sentence)
            if size <= limit:
                units.append((sentence, size, first))
                first = False
                continue
            words = sentence.split(" ")
            step = max(1, len(words) * limit // (size + 1))
            for start in range(0, len(words), step):
                piece = " ".join(words[start : start + step])
                units.append((piece, count(piece), first))
                first = False
    return units


def _pack(units: list[_Unit], limit: int, overlap: int) -> list[tuple[str, int]]:
    """Units packed into (piece, tokens) of at most ``limit`` tokens, with overlap."""
    chunks: list[tuple[str, int]] = []
    current: list[_Unit] = []
    used = 0
    for unit in units:
        if current and used + unit[1] > limit:
            chunks.append((_join(current), used))
            tail: list[_Unit] = []
            carried = 0
            for previous in reversed(current):
                if carried + previous[1] > overlap:
                    break
                tail.insert(0, previous)
                carried += previous[1]
            current, used = tail, carried
        current.append(unit)
        used += unit[1]
    if current:
        chunks.append((_join(current), used))
    return chunks


def _join(units: list[_Unit]) -> str:
    parts = []
    for index, (text, _, new_paragraph) in enumerate(units):
        if index:
            parts.append("\n\n" if new_paragraph else " ")
        parts.append(text)
    return "".join(parts)


def _cut(text: str) -> int:
    """Where to end a window of a streamed text: after its last paragraph break in the
    second half, else after its last whitespace, else at its end."""
    breaks = list(_PARAGRAPHS.finditer(text, len(text) // 2))
    if breaks:
        return breaks[-1].end()
    space = max(text.rfind(" "), text.rfind("\n"))
    return space + 1 if space > 0 else len(text)


class StreamSplit:
    """``split_text`` over a stream of text: one window at a time, so memory holds a
    window and a part, not the document. The last part of each window is carried
    into the next, where it may grow, so parts are cut as in one whole split."""

    def __init__(self, count: Callable[[str], int], limit: int, overlap: int) -> None:
        self._count, self._limit, self._overlap = count, limit, overlap
        self.tokens = 0  # of the text split so far
        self.done = 0  # characters of the text in the parts handed out, about

    def parts(self, blocks: Iterable[str], cancel: Cancellation) -> Iterator[str]:
        carry, carried = "", 0
        pending: list[str] = []
        held = 0
        handed = 0  # characters taken from ``blocks``
        for block in chain(blocks, [None]):
            if cancel.cancelled:
                raise KeyboardInterrupt
            if block is not None:
                pending.append(block)
                held += len(block)
                handed += len(block)
                if held < STREAM_WINDOW:
                    continue
            text = carry + "".join(pending)
            cut = len(text) if block is None else _cut(text)
            if cancel.cancelled:
                raise KeyboardInterrupt
            units = _units(text[:cut], self._count, self._limit)
            tokens = sum(unit[1] for unit in units)
            self.tokens += tokens - carried
            chunks = _pack(units, self._limit, self._overlap)
            start, passed = handed - len(text), 0
            if cut < len(text) and len(chunks) < 2:  # less than a part so far: wait for more
                carry, carried = text, tokens
                pending, held = [], 0
                continue
            final = cut == len(text)  # the end, or a window with no place to cut
            for chunk, size in chunks if final else chunks[:-1]:
                self.done = start + cut * passed // max(1, tokens)
                yield chunk
                passed += size
            carry, carried = "", 0
            if not final:
                last, carried = chunks[-1]
                carry = last + ("\n\n" if text[cut - 1] == "\n" else " ") + text[cut:]
            pending, held = [], 0

"""Putting answers on the terminal or into a pipe.

On a terminal the answer is Markdown, rendered while it streams: finished
blocks are printed once into scrollback and only the unfinished tail is
re-rendered (throttled, and cut to the screen's height), so the cost stays
linear in the reply's length and tall replies never duplicate lines. Into a
pipe the answer is the exact text. Either way, model output is never
interpreted as Rich markup and control characters other than newline and tab
are removed.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import re
import time
from typing import IO, TYPE_CHECKING, Protocol

from gptcli.errors import GptcliError

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live
    from rich.segment import Segment
    from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def sanitize(text: str) -> str:
    """Remove terminal control characters (escape sequences start with one) but keep \\n and \\t."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def hit_line(name: str, snippet: str, width: int) -> Text:
    """A search hit on one line: the session's name, then the snippet with its matches in bold.

    The matches arrive between \\x02 and \\x03 (see gptcli.store.index).
    """
    from rich.text import Text

    line = Text(f"{name:<{width}}  ")
    for number, piece in enumerate(re.split("[\x02\x03]", snippet)):
        line.append(re.sub(r"\s+", " ", sanitize(piece)), style="bold" if number % 2 else "")
    return line


def clipboard_sequence(text: str, inside_tmux: bool = False) -> str:
    """OSC 52: asks the terminal to put ``text`` on the clipboard (wrapped for tmux)."""
    payload = base64.b64encode(text.encode("utf-8", errors="surrogatepass")).decode()
    sequence = f"\x1b]52;c;{payload}\x07"
    return f"\x1bPtmux;\x1b{sequence}\x1b\\" if inside_tmux else sequence


class OutputClosed(Exception):
    """The reader of stdout went away (``| head``); stop quietly."""


class OutputError(GptcliError):
    """Writing the answer failed (disk full, I/O error)."""


class GuardedStream:
    """A text stream whose write failures become OutputClosed / OutputError."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def _guard(self, exc: OSError) -> Exception:
        if isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EBADF):
            return OutputClosed()
        return OutputError(f"cannot write the answer to stdout: {exc.strerror or exc}")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._guard(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._guard(exc) from None

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


class Renderer(Protocol):
    """Receives an answer piece by piece and shows it."""

    def feed(self, text: str) -> None: ...

    def finish(self) -> None: ...


class PlainRenderer:
    """Writes the exact text (sanitised) as it arrives."""

    def __init__(self, stream: IO[str] | GuardedStream) -> None:
        self._stream = stream
        self._last = ""

    def feed(self, text: str) -> None:
        clean = sanitize(text)
        if clean:
            self._stream.write(clean)
            self._stream.flush()
            self._last = clean[-1]

    def finish(self) -> None:
        if self._last and self._last != "\n":
            self._stream.write("\n")
        self._stream.flush()


def split_complete_blocks(text: str) -> tuple[str, str]:
    """Split ``text`` into (finished Markdown blocks, unfinished tail).

    A block is finished once a blank line follows it outside a code fence; a
    fence is finished at its closing line.
    """
    fence: str | None = None
    cut = 0
    position = 0
    lines = text.split("\n")
    for index, line in enumerate(lines[:-1]):  # the last line is still being written
        position += len(line) + 1
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
        elif fence is not None and line.strip().startswith(fence) and not line.strip(fence[0]):
            fence = None
            cut = position
        elif fence is None and not line.strip() and index > 0:
            cut = position
    return text[:cut], text[cut:]


class _Tail:
    """The unfinished block, shown by its last screenful of lines."""

    def __init__(self, markdown: str, code_theme: str) -> None:
        self.markdown = markdown
        self.code_theme = code_theme

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.markdown import Markdown
        from rich.segment import Segment

        if not self.markdown.strip():
            return
        lines = console.render_lines(
            Markdown(self.markdown, code_theme=self.code_theme), options, pad=False
        )
        height = max(1, (options.max_height or console.height) - 1)
        for line in lines[-height:]:
            yield from line
            yield Segment.line()


_WARM_UP_SAMPLE = """# Title

Some **bold**, *italic* and `code` text with a [link](https://example.com).

- a list item
1. a numbered item

> a quote

| a | b |
|---|---|
| 1 | 2 |

```python
def f(x: int) -> int:
    return x + 1
```
"""


def warm_up(code_theme: str = "monokai") -> None:
    """Import and exercise the Markdown stack (markdown-it, Rich, Pygments) once.

    The first answer otherwise pays for these imports and regex compilations
    (about 150 ms here) between its first tokens; the REPL runs this in a thread
    while the model loads.
    """
    import io

    from rich.console import Console
    from rich.markdown import Markdown

    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with contextlib.suppress(Exception):  # best effort: a real render reports its own errors
        console.print(Markdown(_WARM_UP_SAMPLE, code_theme=code_theme))


class MarkdownRenderer:
    """Streams Markdown to a terminal Console; see the module docstring for how."""

    def __init__(
        self,
        console: Console,
        code_theme: str = "monokai",
        fps: float = 5.0,
        redraw_share: float = 0.01,
    ) -> None:
        self._console = console
        self._code_theme = code_theme
        self._fps = fps
        self._redraw_share = redraw_share
        self._redraw_cost = 0.0
        self._text = ""
        self._committed = 0
        self._previous: str | None = None
        self._live: Live | None = None
        self._drawn_at = 0.0

    @property
    def console(self) -> Console:
        return self._console

    def _lines(self, markdown: str) -> list[list[Segment]]:
        from rich.markdown import Markdown

        return self._console.render_lines(
            Markdown(markdown, code_theme=self._code_theme), self._console.options
        )

    def _print_block(self, block: str) -> None:
        """Print ``block`` as it would appear after the previous one in a one-shot render.

        Rich decides the spacing between Markdown elements from their neighbours,
        so the block is rendered together with the previous block and only the
        new lines are printed: the scrollback then matches a render of the whole
        reply, at a cost linear in its length.
        """
        from rich.segment import Segment, Segments

        if not block.strip():
            return
        if self._previous is None:
            lines = self._lines(block)
        else:
            skip = len(self._lines(self._previous))
            lines = self._lines(self._previous + block)[skip:]
        for line in lines:
            self._console.print(Segments([*line, Segment.line()]), end="")
        self._previous = block if block.endswith("\n\n") else block + "\n\n"

    def feed(self, text: str) -> None:
        clean = sanitize(text)
        if not clean:
            return
        self._text += clean
        done, tail = split_complete_blocks(self._text[self._committed :])
        if done:
            # The Live region is closed (and erased) before printing into
            # scrollback, so finished blocks are written exactly once.
            self._stop_live()
            self._print_block(done)
            self._committed += len(done)
        if tail.strip():
            self._show_tail(tail)

    def _show_tail(self, tail: str) -> None:
        # Redrawn from this thread, at most `fps` times a second and less often when
        # a redraw is costly, so that redraws take at most `redraw_share` of the time:
        # every millisecond spent here is taken from decoding on a machine whose cores
        # all run llama.cpp (a background refresh thread competed with them and slowed
        # decoding many times over on a busy 2-core machine).
        from rich.live import Live

        now = time.monotonic()
        if self._live is None:
            self._live = Live(
                _Tail(tail, self._code_theme),
                console=self._console,
                auto_refresh=False,
                transient=True,
                vertical_overflow="crop",
            )
            self._live.start(refresh=True)
        elif now - self._drawn_at >= max(1 / self._fps, self._redraw_cost / self._redraw_share):
            self._live.update(_Tail(tail, self._code_theme), refresh=True)
        else:
            return
        self._drawn_at = time.monotonic()
        self._redraw_cost = self._drawn_at - now

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.update("", refresh=False)
            self._live.stop()
            self._live = None

    def finish(self) -> None:
        self._stop_live()
        self._print_block(self._text[self._committed :])
        self._committed = len(self._text)

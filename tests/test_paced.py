"""The chat's renderer fed from a thread of its own: same final screen, failures not lost."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from gptcli.terminal.paced import PacedRenderer
from gptcli.terminal.render import MarkdownRenderer, OutputClosed

ANSWER = "# Title\n\nSome **bold** text.\n\n- one\n- two\n\n```python\nx = 1\n```\n\nThe end."


def console() -> Console:
    return Console(file=io.StringIO(), width=60, force_terminal=False, color_system=None)


def shown(text: str, paced: bool, pieces: int = 3) -> str:
    screen = console()
    inner = MarkdownRenderer(screen)
    renderer = PacedRenderer(inner, per_second=200) if paced else inner
    for start in range(0, len(text), pieces):
        renderer.feed(text[start : start + pieces])
        if start % 30 == 0:
            time.sleep(0.01)  # let the render thread take some pieces
    renderer.finish()
    renderer.finish()  # a second call (after a second Ctrl-C) does nothing more
    output = screen.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def test_the_final_render_is_the_whole_answer() -> None:
    assert shown(ANSWER, paced=True) == shown(ANSWER, paced=False)
    assert "The end." in shown(ANSWER, paced=True)


class Closing:
    """A renderer whose reader went away."""

    def feed(self, text: str) -> None:
        raise OutputClosed

    def finish(self) -> None:
        raise AssertionError("not finished after a failure")


def test_a_failure_in_the_render_thread_reaches_the_decoding_thread() -> None:
    renderer = PacedRenderer(Closing(), per_second=100)
    renderer.feed("a")
    deadline = time.monotonic() + 10
    with pytest.raises(OutputClosed):
        while time.monotonic() < deadline:
            renderer.feed("b")
            time.sleep(0.01)
    with pytest.raises(OutputClosed):
        renderer.finish()


def test_settle_renders_what_came_and_the_rest_still_shows() -> None:
    screen = console()
    renderer = PacedRenderer(MarkdownRenderer(screen), per_second=200)
    renderer.feed("Checking the time.")
    renderer.settle()  # a tool call's line goes here
    output = screen.file
    assert isinstance(output, io.StringIO)
    assert "Checking the time." in output.getvalue()
    screen.print("⚙ time {}")
    renderer.feed("\n\nIt is noon.")
    renderer.finish()
    text = output.getvalue()
    assert text.index("Checking") < text.index("⚙ time") < text.index("It is noon.")

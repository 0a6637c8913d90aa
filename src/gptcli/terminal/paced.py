"""Rendering an answer off the decode path.

The thread that decodes only appends each piece of text to a list; a thread of
the renderer's own takes what has accumulated a few times a second and hands it
to the real renderer (Markdown on a terminal) in one piece. So rendering costs
the decode loop a list append per token, whatever the renderer does, and the
renderer's work per refresh covers many tokens at once. ``finish`` stops the
thread and renders what is left, so the final screen is the full answer.
"""

from __future__ import annotations

import threading

from gptcli.terminal.render import Renderer

REFRESH_PER_SECOND = 10.0


class PacedRenderer:
    """A Renderer that passes text on to ``inner`` from its own thread, at a fixed rate."""

    def __init__(self, inner: Renderer, per_second: float = REFRESH_PER_SECOND) -> None:
        self._inner = inner
        self._interval = 1 / per_second
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._finished = False

    def feed(self, text: str) -> None:
        # list.append is atomic under the GIL: no lock on the decode path.
        self._pending.append(text)
        if self._thread is None:
            if self._failure is not None:
                raise self._failure  # the output went away: stop the answer as before
            self._thread = threading.Thread(target=self._run, name="gptcli-render", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        taken = len(self._pending)
        if taken:
            text = "".join(self._pending[:taken])
            del self._pending[:taken]  # pieces appended meanwhile stay for the next round
            self._inner.feed(text)

    def _run(self) -> None:
        try:
            while not self._wake.wait(self._interval):
                self._drain()
        except BaseException as exc:  # raised in the decoding thread by feed() or finish()
            self._failure = exc
            self._thread = None

    def settle(self) -> None:
        """Render all the text fed so far, as ``finish`` does, but stay ready for more: a
        tool call's lines are printed between two parts of an answer."""
        thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join()
            self._thread = None
        self._wake.clear()
        if self._failure is not None:
            raise self._failure
        self._drain()
        self._inner.finish()

    def finish(self) -> None:
        """Stop the thread, render the rest and finish: the final screen is the whole answer.

        Safe to call again after a second Ctrl-C cut the first call short.
        """
        if self._finished:
            return
        thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join()
            self._thread = None
        if self._failure is not None:
            raise self._failure
        self._drain()
        self._inner.finish()
        self._finished = True

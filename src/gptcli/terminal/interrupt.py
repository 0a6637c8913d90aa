"""Ctrl-C as a request to stop, not an exception thrown into native code."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from gptcli.engine.base import Cancellation


@contextmanager
def sigint_cancels(cancel: Cancellation) -> Iterator[None]:
    """While active, the first Ctrl-C sets ``cancel``; a second one raises KeyboardInterrupt.

    The engine checks ``cancel`` between tokens and from llama.cpp's abort and
    progress callbacks, so the reply stops cleanly with its state consistent.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

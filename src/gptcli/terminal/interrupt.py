"""The signals that stop gptcli: Ctrl-C (SIGINT), a closed terminal (SIGHUP), a kill (SIGTERM).

Three regimes, from the first instruction of the process to its exit:

- **Start-up** (``gptcli.main``): nothing has been written yet, so a signal ends the
  process at once with its status (130, 129, 143). A KeyboardInterrupt raised then
  could land in a finalizer or an import lock's weakref callback, where Python
  prints "Exception ignored" and carries on as if nothing had happened: a Ctrl-C
  that ends in status 0 after the whole answer.
- **Working** (``stop_gracefully``): a command that writes files runs with
  Ctrl-C as KeyboardInterrupt and SIGHUP/SIGTERM as ``Stopped``, so every
  ``finally`` and atomic write unwinds as it does for Ctrl-C.
- **Answering** (``signals_cancel``): while the engine works, a signal is a
  request to stop at the next token, so the partial answer is kept and saved.
  SIGHUP and SIGTERM also end the program once the turn is saved.

A signal whose exception lands in a finalizer (a ``__del__``, a weakref
callback) is swallowed there: Python reports it to ``sys.unraisablehook`` and
goes on. The hook installed here sends the same signal again a moment later, so
the program stops at its next step instead of finishing the work it was told
to abandon.

SIGHUP means the terminal is gone: standard output and error are pointed at
/dev/null if they were that terminal, so nothing is written into a dead pty. A
signal the parent set to be ignored (``nohup``, a background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from gptcli.errors import signal_status

if TYPE_CHECKING:
    from gptcli.engine.base import Cancellation

STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
ENDING = (signal.SIGHUP, signal.SIGTERM)

_ending: list[int] = []  # SIGHUP / SIGTERM received, in order


class Stopped(BaseException):
    """SIGHUP or SIGTERM: unwind like Ctrl-C, then end with the signal's status.

    A BaseException, so the places that catch KeyboardInterrupt to go on (the
    REPL's input line, an interrupted summary) do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def ending_signal() -> int | None:
    """The first SIGHUP or SIGTERM received, if any: the program must end."""
    return _ending[0] if _ending else None


def exit_status(status: int) -> int:
    """``status``, unless an ending signal arrived: then that signal's status."""
    signum = ending_signal()
    return signal_status(signum) if signum is not None else status


def _record(signum: int) -> None:
    if signum in ENDING:
        _ending.append(signum)
    if signum == signal.SIGHUP:
        detach_from_terminal()


def detach_from_terminal() -> None:
    """Point stdout and stderr at /dev/null where they were the (now closed) terminal."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    os.close(devnull)


def _install(handler: signal._HANDLER) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


def _raise(signum: int, frame: FrameType | None) -> None:
    _record(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


_REDELIVER_AFTER = 0.01  # seconds: long enough for the finalizer's caller to resume


def _redeliver_swallowed(info: sys.UnraisableHookArgs) -> None:
    exc = info.exc_value
    if isinstance(exc, Stopped):
        signum = exc.signum
    elif isinstance(exc, KeyboardInterrupt):
        signum = signal.SIGINT
    else:
        sys.__unraisablehook__(info)
        return
    main = threading.main_thread().ident
    if main is None:
        return
    timer = threading.Timer(_REDELIVER_AFTER, signal.pthread_kill, (main, signum))
    timer.daemon = True
    with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown
        timer.start()


def _catch_swallowed() -> None:
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _redeliver_swallowed


def stop_gracefully() -> None:
    """Working regime: Ctrl-C raises KeyboardInterrupt, SIGHUP and SIGTERM raise Stopped."""
    _catch_swallowed()
    _install(_raise)


class signals_cancel:
    """While active, the first signal sets ``cancel``; a second one raises.

    The engine checks ``cancel`` between tokens and from llama.cpp's abort and
    progress callbacks, so the reply stops cleanly with its state consistent.
    After a SIGHUP or SIGTERM, leaving the block raises ``Stopped``: the
    caller's ``finally`` blocks save the turn, and the program ends.
    """

    def __init__(self, cancel: Cancellation) -> None:
        self._cancel = cancel
        self._previous: dict[int, signal._HANDLER] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self._cancel.cancelled
        _record(signum)
        if first:
            self._cancel.cancel()
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise Stopped(signum)

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        _catch_swallowed()
        for signum in STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is signal.SIG_IGN or handler is None:
                continue
            self._previous[signum] = handler
            signal.signal(signum, self._handle)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        ending = ending_signal()
        if exc_type is None and ending is not None:
            raise Stopped(ending)


@contextlib.contextmanager
def keys_unechoed(fd: int = 0) -> Iterator[None]:
    """While an answer streams, keys typed are not echoed: a ``^C`` written into the live
    region moves the cursor under Rich, whose erase then misses a line, and the unfinished
    paragraph stayed on screen above its final render. Ctrl-C still sends SIGINT."""
    try:
        import termios

        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (OSError, termios.error):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)

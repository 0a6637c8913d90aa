"""The real terminal as the use cases' environment: sys streams, signals, a person on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when an environment is built: `gptcli --help` needs none of it
    from gptcli.answering.environment import Environment, Notify


def stdin_is_interactive(fd: int = 0) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def stderr_notes(quiet: bool = False) -> Notify:
    """Notes and warnings as ``gptcli: note: ...`` lines on stderr (none when ``quiet``)."""

    def notify(message: str, kind: str) -> None:
        if quiet:
            return
        sys.stderr.write(f"gptcli: {kind}: {message}\n")
        sys.stderr.flush()

    return notify


def terminal_environment(
    quiet: bool = False, debug: bool = False, notify: Notify | None = None
) -> Environment:
    """This process's streams and terminal; tools that may change things ask on stderr's
    terminal. stdin is input only when it is not the terminal."""
    from gptcli.answering.environment import Environment
    from gptcli.paths import app_paths
    from gptcli.terminal.interrupt import ending_signal, signals_cancel
    from gptcli.terminal.tools import terminal_asker

    stdin = sys.stdin
    interactive = stdin is None or stdin.closed or stdin_is_interactive(0)
    ending: Callable[[], bool] = lambda: ending_signal() is not None  # noqa: E731
    return Environment(
        paths=app_paths(),
        notify=notify or stderr_notes(quiet),
        stdin=None if interactive else stdin.buffer,
        stderr_interactive=stdin_is_interactive(2),
        asker=terminal_asker(sys.stderr),
        cancelling=signals_cancel,
        ending=ending,
        debug=debug,
    )

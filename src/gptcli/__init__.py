"""gptcli: a local-first terminal chatbot."""

from __future__ import annotations

from gptcli.version import __version__

__all__ = ["__version__", "main"]


def main() -> None:
    """The console script. Until a command takes over its signals (terminal/interrupt.py),
    Ctrl-C, SIGHUP or SIGTERM end the process at once and quietly with 130, 129 or 143:
    nothing has been written yet. Installed before any other import, to leave the
    smallest window to Python's default handler."""
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _exit_at_once)
    from gptcli.cli.app import main as cli_main

    cli_main()


def _exit_at_once(signum: int, frame: object) -> None:
    import os
    import signal

    if signum == signal.SIGINT:
        try:  # noqa: SIM105 - no import here: contextlib may be what was interrupted
            os.write(2, b"\n")
        except OSError:
            pass
    # 128 + the signal's number, as errors.signal_status says (no import in a handler).
    os._exit(128 + signum)

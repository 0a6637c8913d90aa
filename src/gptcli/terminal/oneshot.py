"""`gptcli ask` on a terminal or in a pipe: the display of one answer around the use case."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import IO

from gptcli.answering.ask import AskRequest, run_ask
from gptcli.errors import ExitStatus, UsageError
from gptcli.terminal.display import OutputMode, ask_display
from gptcli.terminal.environment import terminal_environment
from gptcli.terminal.render import GuardedStream


def run_oneshot(
    request: AskRequest, mode: OutputMode, debug: bool = False, out: IO[str] | None = None
) -> ExitStatus:
    """Answer ``request``, streaming it as ``mode`` says (or printing it whole at the end)."""
    if mode.jsonl and (mode.json or request.schema or request.grammar):
        raise UsageError("--jsonl cannot be combined with --json, --schema or --grammar")
    env = terminal_environment(quiet=mode.quiet, debug=debug)
    held = replace(mode, held=bool(request.schema or request.grammar))
    stream = GuardedStream(out or sys.stdout)
    display = ask_display(held, stream, sys.stderr, env.stderr_interactive)
    return run_ask(request, env, display)

"""The ``shell`` tool: one command through /bin/sh, bounded in time and output."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from typing import Any

from gptcli.engine.base import ToolSpec
from gptcli.tools.base import BUILT_IN, ToolOutput, failure

# Output kept from a command; the result cap applies after. More is read and dropped, so a
# chatty command is not blocked on a full pipe.
MAX_OUTPUT_BYTES = 1_000_000


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _collect(process: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, int, bool]:
    """Output until end of file or the deadline: (kept bytes, dropped byte count, timed out)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    kept = bytearray()
    dropped = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(kept), dropped, True
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(kept), dropped, False
            room = MAX_OUTPUT_BYTES - len(kept)
            kept += chunk[:room]
            dropped += max(0, len(chunk) - room)


def run_command(command: str, timeout: float) -> ToolOutput:
    """Run ``command`` with ``/bin/sh -c`` in the current directory; stdin is closed."""
    deadline = time.monotonic() + timeout
    try:
        # A session of its own: at the timeout the whole group goes, background jobs included.
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return failure(f"cannot run /bin/sh: {exc.strerror or exc}")
    try:
        output, dropped, timed_out = _collect(process, deadline)
        if not timed_out:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        # Also on success: a job the command left in the background dies with it.
        _kill_group(process)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    if timed_out:
        return failure(f"timed out after {timeout:g} s; the command and its processes were killed")
    text = output.decode("utf-8", errors="replace")
    status = process.returncode
    lines = [f"exit status: {status}" if status >= 0 else f"killed by signal {-status}"]
    if text:
        lines.append(text.rstrip("\n"))
    if dropped:
        lines.append(f"[truncated: dropped the last {dropped} bytes of output]")
    return ToolOutput("\n".join(lines), truncated=bool(dropped))


class ShellTool:
    """Runs a shell command in the current directory; it may change anything: not read-only."""

    read_only = False
    source = BUILT_IN
    spec = ToolSpec(
        name="shell",
        description=(
            "Run a command with /bin/sh -c in the current directory and return its exit status "
            "and output (stdout and stderr together). Standard input is closed; the command is "
            "killed at the time limit."
        ),
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The shell command line to run."}
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    )

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        return run_command(str(arguments["command"]), timeout)

"""Waiting in tests: for states, not for time, with limits that grow with the machine's load.

A limit here catches a hang; it is not a speed test. On a loaded machine (CI beside
another build) everything runs several times slower, so each limit is multiplied by
the current load per core. Latency promises of the product ("Ctrl-C ends it within
2 s") are checked the same way: 2 s on an idle machine, more on a busy one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def load_factor() -> float:
    """How many runnable tasks compete for each core now (at least 1, at most 8)."""
    cores = os.cpu_count() or 1
    try:
        fields = Path("/proc/loadavg").read_text().split()
        recent = float(fields[0])
        running = int(fields[3].split("/")[0]) - 1  # minus the reader itself
    except (OSError, ValueError, IndexError):
        return 1.0
    return min(8.0, max(1.0, max(recent, running) / cores))


def patience(seconds: float) -> float:
    """``seconds`` on an idle machine, scaled by the current load."""
    return seconds * load_factor()


def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + patience(seconds)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def blocked_reading(pid: int, fd: int = 0) -> bool:
    """The process sits in read(fd) (x86-64 and aarch64 syscall numbers)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    if len(fields) < 2:
        return False
    read_syscall = "63" if os.uname().machine == "aarch64" else "0"
    return fields[0] == read_syscall and int(fields[1], 16) == fd


def maps_file(pid: int, suffix: str) -> bool:
    """The process has a file ending in ``suffix`` mapped (a model being loaded)."""
    try:
        return any(line.rstrip().endswith(suffix) for line in open(f"/proc/{pid}/maps"))
    except OSError:
        return False

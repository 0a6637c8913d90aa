"""How many cores other processes keep busy, and so how many threads llama.cpp should use.

llama.cpp's threads wait for each other at every step of a decode, spinning
before they sleep; one that shares its core with another busy process holds up
all the others. On a 2-core machine beside two `yes` processes, 2 threads
decoded 2-3 tokens/s and 1 thread 31-44 (idle, both about 61). So the default
thread count leaves out the cores that other processes were seen to keep busy
while the model loaded: a measure over that span costs no time of its own.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

SHORTEST_WINDOW = 0.03  # seconds; over less, /proc/stat's 10 ms ticks say too little
WHOLE_CORE = 0.75  # busy share elsewhere that counts as a core taken
RECHECK_EVERY = 1.0  # seconds of decoding between two looks at the machine
# While our threads spin they keep every core runnable, so a process sharing a core with
# one of them gets only part of it: 2 threads beside one busy process on 2 cores leave it
# about two thirds of a core. Half a core seen elsewhere then counts as a core taken.
WHOLE_CORE_WHILE_DECODING = 0.5


@dataclass(frozen=True)
class CpuSample:
    """The machine's busy and total CPU time and this process's own, at one moment."""

    busy: float  # seconds, all CPUs
    total: float
    own: float
    wall: float

    @classmethod
    def take(cls) -> CpuSample | None:
        """None where /proc/stat cannot be read (not Linux)."""
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = handle.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        ticks = [int(value) for value in fields[1:9]]
        idle = ticks[3] + ticks[4]  # idle and iowait
        hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = sum(ticks) / hertz
        return cls(total - idle / hertz, total, time.process_time(), time.monotonic())


def busy_elsewhere(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """Cores kept busy by other processes between two samples; None if unknown."""
    if before is None or after is None or after.wall - before.wall < SHORTEST_WINDOW:
        return None
    total = after.total - before.total
    if total <= 0:
        return None
    cpus = os.cpu_count() or 1
    busy = (after.busy - before.busy) / total * cpus
    own = (after.own - before.own) / (after.wall - before.wall)
    return max(0.0, busy - own)


def default_threads(physical: int, busy: float | None, whole: float = WHOLE_CORE) -> int:
    """Physical cores, less the cores others keep busy (a share of ``whole`` or more counts
    as a core) when that leaves fewer; at least one."""
    if busy is None:
        return physical
    cpus = os.cpu_count() or physical
    taken = math.floor(busy + (1 - whole))
    return max(1, min(physical, cpus - taken))


def physical_cores() -> int:
    """Physical cores (not hyper-threads): llama.cpp decodes fastest with one thread each."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cores = set()
            physical = ""
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    cores.add((physical, value.strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2) if (os.cpu_count() or 1) > 1 else 1


class ThreadWatch:
    """Decides the thread count again while a model decodes, for a machine that got busy
    (or idle) after it loaded: a busy process beside spinning threads slows every step."""

    def __init__(self, physical: int, threads: int) -> None:
        self.threads = threads
        self._physical = physical
        self._last = CpuSample.take()
        self._due = time.monotonic() + RECHECK_EVERY

    def poll(self) -> int | None:
        """The thread count to use from now on, when it changes; else None (a clock read)."""
        now = time.monotonic()
        if now < self._due:
            return None
        self._due = now + RECHECK_EVERY
        sample = CpuSample.take()
        busy = busy_elsewhere(self._last, sample)
        self._last = sample
        if busy is None:
            return None
        wanted = default_threads(self._physical, busy, WHOLE_CORE_WHILE_DECODING)
        if wanted == self.threads:
            return None
        self.threads = wanted
        return wanted


def watch_threads(given: int | None, threads: int) -> ThreadWatch | None:
    """A watch over the thread count chosen here; None for a count a person gave
    (--threads, GPTCLI_THREADS, the config), which stays."""
    return None if given else ThreadWatch(physical_cores(), threads)


def thread_notice(threads: int, busy: float | None) -> str:
    """What --debug says of the thread count chosen."""
    seen = "unknown" if busy is None else f"{busy:.1f}"
    return f"{threads} thread{'s' if threads != 1 else ''} (cores busy elsewhere: {seen})"

"""The default thread count leaves out cores that other processes keep busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gptcli.engine.cpuload import CpuSample, busy_elsewhere, default_threads


@pytest.mark.parametrize(
    ("cpus", "physical", "busy", "threads"),
    [
        (2, 2, None, 2),  # unknown: as before
        (2, 2, 0.0, 2),
        (2, 2, 0.3, 2),  # a little background work takes no core
        (2, 2, 0.8, 1),
        (2, 2, 1.9, 1),
        (2, 2, 5.0, 1),  # never fewer than one
        (16, 8, 4.0, 8),  # hyper-threads left free: all physical cores
        (16, 8, 12.0, 4),
    ],
)
def test_default_threads(
    monkeypatch: pytest.MonkeyPatch, cpus: int, physical: int, busy: float | None, threads: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert default_threads(physical, busy) == threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_process_elsewhere_is_seen_and_our_own_work_is_not() -> None:
    def measure(seconds: float, spin: bool) -> float:
        before = CpuSample.take()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not spin:
                time.sleep(0.01)
        found = busy_elsewhere(before, CpuSample.take())
        assert found is not None
        return found

    cpus = os.cpu_count() or 1
    others = measure(0.3, spin=False)  # what the rest of the machine does now
    quiet = measure(0.3, spin=True)  # the same, while this process keeps a core busy
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = measure(0.3, spin=True)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0 <= others <= cpus + 0.25 and 0 <= busy <= cpus + 0.25
    if others <= cpus - 2 + 0.25:
        # Room for this process and the spinner: this process's own core is not counted,
        # and the spinner's is.
        assert quiet < others + 0.5
        assert busy > quiet + 0.5
    else:
        # Every core already taken (a loaded machine): a new busy process only takes shares
        # of the same cores, so it cannot add a core; it must not make the machine look idler.
        assert busy > quiet - 0.5
    assert busy_elsewhere(CpuSample.take(), CpuSample.take()) is None  # too short to tell


def test_the_thread_count_is_decided_again_while_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a second, from what the rest of the machine did since the last look: down to
    one thread beside a process that took part of a core, back up once it is gone."""
    from gptcli.engine import cpuload

    clock = [100.0]  # seconds, wall
    others = [0.0]  # CPU seconds the rest of the machine has used

    def sample() -> CpuSample:  # 2 CPUs; this process uses none of its own here
        return CpuSample(busy=others[0], total=clock[0] * 2, own=0.0, wall=clock[0])

    def tick(seconds: float, elsewhere: float) -> None:
        clock[0] += seconds
        others[0] += seconds * elsewhere

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(cpuload.CpuSample, "take", staticmethod(sample))
    monkeypatch.setattr("gptcli.engine.cpuload.time.monotonic", lambda: clock[0])
    watch = cpuload.ThreadWatch(2, 2)
    tick(0.5, 0.7)
    assert watch.poll() is None  # not a second yet: only the clock is read
    tick(0.6, 0.7)
    assert watch.poll() == 1  # two thirds of a core taken beside our spinning threads
    tick(1.1, 1.0)
    assert watch.poll() is None  # still taken: stays at one
    tick(1.1, 0.05)
    assert watch.poll() == 2 and watch.threads == 2
    assert cpuload.watch_threads(3, 3) is None  # a count a person gave stays

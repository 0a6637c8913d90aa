"""The default thread count leaves out cores that other processes keep busy."""

from __future__ import annotations

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
    def measure(seconds: float) -> float:
        before = CpuSample.take()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass  # this process's own work
        found = busy_elsewhere(before, CpuSample.take())
        assert found is not None
        return found

    quiet = measure(0.3)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = measure(0.3)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy > quiet + 0.5  # the spinner is about one core
    assert busy_elsewhere(CpuSample.take(), CpuSample.take()) is None  # too short to tell

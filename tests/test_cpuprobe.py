"""The check for CPU kernels that crash (AMX inside some VMs), and its fallback."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from gptcli.engine.cpuprobe import (
    CACHE_NAME,
    ProbeOutcome,
    cpu_flags,
    decide_extra_buffers,
    run_child,
)
from tests.conftest import Gptcli

AMX = frozenset({"sse2", "avx2", "amx_tile", "amx_int8"})
MODEL = Path("model.gguf")


class Recorder:
    def __init__(self, outcome: ProbeOutcome) -> None:
        self.outcome = outcome
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str]) -> ProbeOutcome:
        self.calls.append(command)
        return self.outcome


def test_crashing_child_turns_extra_buffers_off_once(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(-signal.SIGILL, "SIGILL"))
    first = decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, AMX)
    assert first.extra_buffers is False
    assert first.notice is not None and "SIGILL" in first.notice
    assert str(tmp_path / CACHE_NAME) in first.notice
    assert (tmp_path / CACHE_NAME).stat().st_mode & 0o777 == 0o600
    second = decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, AMX)
    assert second.extra_buffers is False
    assert second.notice is None  # said once, then remembered
    assert len(runner.calls) == 1
    assert runner.calls[0][1:3] == ["-m", "gptcli.engine.cpuprobe"]


def test_healthy_child_keeps_extra_buffers_silently(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(0, ""))
    verdict = decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, AMX)
    assert verdict.extra_buffers is True
    assert verdict.notice is None
    assert json.loads((tmp_path / CACHE_NAME).read_text()) != {}


def test_each_quantisation_is_checked(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(0, ""))
    decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, AMX)
    decide_extra_buffers(MODEL, "Q8_0", tmp_path, {}, runner, AMX)
    assert len(runner.calls) == 2


def test_no_amx_means_no_check(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(-signal.SIGILL, "SIGILL"))
    verdict = decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, frozenset({"avx2"}))
    assert verdict.extra_buffers is True
    assert runner.calls == []


def test_inconclusive_check_is_safe_and_not_remembered(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(None, "no answer"))
    verdict = decide_extra_buffers(MODEL, "Q4_1", tmp_path, {}, runner, AMX)
    assert verdict.extra_buffers is False
    assert not (tmp_path / CACHE_NAME).exists()


def test_environment_override(tmp_path: Path) -> None:
    runner = Recorder(ProbeOutcome(-signal.SIGILL, "SIGILL"))
    env = {"GPTCLI_CPU_EXTRA_BUFFERS": "1"}
    assert decide_extra_buffers(MODEL, "Q4_1", tmp_path, env, runner, AMX).extra_buffers
    env = {"GPTCLI_CPU_EXTRA_BUFFERS": "off"}
    assert not decide_extra_buffers(MODEL, "Q4_1", tmp_path, env, runner, AMX).extra_buffers
    assert runner.calls == []


def test_unwritable_cache_still_decides(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    runner = Recorder(ProbeOutcome(-signal.SIGILL, "SIGILL"))
    verdict = decide_extra_buffers(MODEL, "Q4_1", blocker / "cache", {}, runner, AMX)
    assert verdict.extra_buffers is False
    assert verdict.notice is not None and "not remembered" in verdict.notice


def test_real_child_killed_by_sigill_is_seen_as_a_crash() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    outcome = run_child([sys.executable, "-c", code])
    assert outcome.crashed
    assert outcome.detail == "SIGILL"
    clean = run_child([sys.executable, "-c", "pass"])
    assert clean.returncode == 0 and not clean.crashed


@pytest.mark.slow
def test_first_run_checks_and_answers_either_way(fresh_gptcli: Gptcli) -> None:
    """Here (AMX that crashes) the note appears once; on a CPU without AMX, never."""
    question = ("ask", "-t", "0", "-n", "30", "Name the capital city of France.")
    first = fresh_gptcli(*question)
    assert first.returncode == 0, first.stderr
    assert "paris" in first.stdout.lower()
    second = fresh_gptcli(*question)
    assert second.returncode == 0
    assert second.stdout == first.stdout
    assert second.stderr == ""  # remembered: never said twice
    cache = fresh_gptcli.home / "cache" / CACHE_NAME
    if any(flag.startswith("amx") for flag in cpu_flags()):
        verdicts = json.loads(cache.read_text())
        assert len(verdicts) == 1
        crashed = list(verdicts.values()) == [False]
        assert ("crashed on this machine" in first.stderr) == crashed
    else:
        assert first.stderr == ""
        assert not cache.exists()

"""Shared fixtures: a private GPTCLI_HOME per test and a runner for the installed script."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.timing import patience

SCRIPT_DIR = Path(sys.executable).parent

# The suite runs in several worker processes (pytest-xdist) that share the cores. llama.cpp's
# threads spin-wait for each other at every step, so two-thread decoding beside another busy
# process slows many times over: under workers, each model gets one thread (the text is the
# same at any thread count). None: the product's own choice.
WORKER_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else None

# Where the gptcli under test keeps its compiled modules: outside the checkout, and kept even
# where the suite's environment says PYTHONDONTWRITEBYTECODE, or each of the suite's ~1,000
# processes would compile gptcli's sources again (0.1 s of CPU each).
PYCACHE = Path(tempfile.gettempdir()) / f"gptcli-tests-pycache-{os.getuid()}"


def pytest_configure(config: pytest.Config) -> None:
    """The tests send Ctrl-C, hang-ups and quits as a terminal does: their targets must not
    inherit them ignored. A suite started under ``nohup`` or as a background job of a
    script gets SIGHUP, SIGINT and SIGQUIT ignored, every child it starts would too, and
    gptcli keeps a signal its parent ignored ignored (``nohup gptcli ...`` must survive a
    hang-up), so every signal test would fail for the way the suite was started."""
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        if signal.getsignal(signum) is signal.SIG_IGN:
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, default)


def gptcli_executable() -> str:
    found = shutil.which("gptcli", path=str(SCRIPT_DIR)) or shutil.which("gptcli")
    if found is None:
        raise RuntimeError("the gptcli console script is not installed")
    return found


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


@dataclass
class Gptcli:
    """Runs the installed console script with a private home and no terminal."""

    home: Path
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        input: bytes | str | None = b"",
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(
            [gptcli_executable(), *args],
            input=data,
            stdin=subprocess.DEVNULL if data is None else None,
            capture_output=True,
            timeout=patience(timeout),
            env={**self.env, **(env or {})},
            cwd=cwd,
            check=False,
        )
        return Result(
            done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            done.stderr.decode("utf-8", errors="replace"),
            done.stdout,
        )


@pytest.fixture(scope="session")
def probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the one-time CPU check once for the whole session, in a home of its own."""
    home = tmp_path_factory.mktemp("probe-home")
    env = clean_env(home)
    subprocess.run(
        [gptcli_executable(), "ask", "-n", "1", "-t", "0", "Hi"],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    return home / "cache"


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # COLUMNS and LINES (pytest-xdist's workers set 80x24) would fix a terminal's size
        # for Rich whatever the pseudo-terminal says, through every resize.
        if not k.startswith("GPTCLI_") and k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")
    }
    env["GPTCLI_HOME"] = str(home)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if WORKER_THREADS is not None:
        env["GPTCLI_THREADS"] = str(WORKER_THREADS)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GPTCLI_HOME", str(home))
    monkeypatch.delenv("GPTCLI_MODEL", raising=False)
    monkeypatch.delenv("GPTCLI_CPU_EXTRA_BUFFERS", raising=False)
    yield home


@pytest.fixture
def gptcli(private_home: Path, probe_cache: Path) -> Gptcli:
    """The installed script, with the session's CPU-check verdict already in its cache."""
    if probe_cache.is_dir():
        shutil.copytree(probe_cache, private_home / "cache", dirs_exist_ok=True)
    return Gptcli(private_home, clean_env(private_home))


@pytest.fixture
def fresh_gptcli(private_home: Path) -> Gptcli:
    """The installed script with an empty home: the CPU check runs again."""
    return Gptcli(private_home, clean_env(private_home))


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    from gptcli.models.resolve import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_backend(bundled_model: Path) -> Iterator[Any]:
    """The bundled model loaded once, for the tests that drive the engine in this process.

    Its threads are picked as the product picks them. Tests that break or replace the
    engine (test_faults, test_snapshot, test_determinism) load their own; the others
    start new conversations, which keep only the prefix they share with the cache."""
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    loaded = LlamaBackend(LoadOptions(bundled_model, threads=WORKER_THREADS, extra_buffers=False))
    yield loaded
    loaded.close()

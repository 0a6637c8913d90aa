"""Detecting CPU kernels that crash, before they crash the user's session.

On some virtual machines the CPU advertises AMX but executing AMX
instructions raises SIGILL, and llama.cpp's AMX matrix kernels (one of its
"extra buffer types") kill the process at the first decode with no traceback.
Before the first load on a CPU that advertises AMX, a child process loads the
model with extra buffer types on and decodes a few tokens. If the child dies
from a signal, gptcli loads with them off. The verdict is remembered per
llama.cpp build, CPU and quantisation type in the cache directory, so the
check runs once. ``GPTCLI_CPU_EXTRA_BUFFERS=0|1`` skips the check.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gptcli.parsing import loads_json
from gptcli.paths import write_private_file

PROBE_TIMEOUT = 180.0
CACHE_NAME = "cpu-probe.json"


@dataclass(frozen=True)
class ProbeOutcome:
    """What the child process did: exited normally, died of a signal, or neither."""

    returncode: int | None
    detail: str

    @property
    def crashed(self) -> bool:
        return self.returncode is not None and self.returncode < 0


@dataclass(frozen=True)
class Verdict:
    extra_buffers: bool
    notice: str | None


ProbeRunner = Callable[[list[str]], ProbeOutcome]


def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def build_fingerprint(quantization: str) -> str:
    """Identifies the native build, the CPU's feature set and the weight type."""
    from gptcli.engine import native

    parts = [native.engine_version(), quantization]
    lib_dir = native.library_dir()
    if lib_dir is not None:
        for lib in sorted(lib_dir.iterdir()):
            stat = lib.stat()
            parts.append(f"{lib.name}:{stat.st_size}:{int(stat.st_mtime)}")
    parts.append(" ".join(sorted(cpu_flags())))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def run_child(command: list[str]) -> ProbeOutcome:
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeOutcome(None, f"no answer within {PROBE_TIMEOUT:.0f} s")
    except OSError as exc:
        return ProbeOutcome(None, str(exc))
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return ProbeOutcome(done.returncode, name)
    tail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
    return ProbeOutcome(done.returncode, tail[0])


def _read_cache(path: Path) -> dict[str, object]:
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def decide_extra_buffers(
    model_path: Path,
    quantization: str,
    cache_dir: Path,
    environ: Mapping[str, str],
    runner: ProbeRunner = run_child,
    flags: frozenset[str] | None = None,
) -> Verdict:
    """Whether llama.cpp's extra CPU buffer types are safe to use here."""
    forced = environ.get("GPTCLI_CPU_EXTRA_BUFFERS", "").strip().lower()
    if forced in ("0", "1", "off", "on", "false", "true", "no", "yes"):
        return Verdict(forced in ("1", "on", "true", "yes"), None)
    if not any(flag.startswith("amx") for flag in (cpu_flags() if flags is None else flags)):
        return Verdict(True, None)
    cache_file = cache_dir / CACHE_NAME
    key = build_fingerprint(quantization)
    cache = _read_cache(cache_file)
    known = cache.get(key)
    if isinstance(known, bool):
        return Verdict(known, None)
    outcome = runner([sys.executable, "-m", "gptcli.engine.cpuprobe", str(model_path)])
    if outcome.returncode is None or (outcome.returncode > 0 and not outcome.crashed):
        # Inconclusive (the model did not load, or the child hung): stay on the
        # safe path this time and ask again next time.
        return Verdict(False, None)
    safe = not outcome.crashed
    cache[key] = safe
    notice = None
    try:
        write_private_file(cache_file, json.dumps(cache, indent=1).encode())
        where = f"remembered in {cache_file}"
    except OSError:
        where = "not remembered: the cache directory is not writable"
    if not safe:
        notice = (
            f"llama.cpp's accelerated CPU kernels (AMX) crashed on this machine ({outcome.detail}) "
            f"in a one-time check; using the portable CPU path ({where})"
        )
    return Verdict(safe, notice)


def main(argv: list[str]) -> int:
    """Child side: load with extra buffer types on and decode a few tokens."""
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Message
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    backend = LlamaBackend(LoadOptions(Path(argv[0]), ctx=128, threads=1, extra_buffers=True))
    events = backend.stream(
        [Message("user", "Hi")], SamplingOptions(temperature=0, max_tokens=4), Cancellation()
    )
    for _ in events:
        pass
    backend.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # report, never traceback: the parent reads one line
        print(f"probe failed: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)

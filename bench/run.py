"""gptcli against native llama.cpp, side by side, in one run.

    .venv/bin/python bench/run.py [--repeats 3] [--threads 2]

The first run builds llama-bench and llama-completion from the llama.cpp sources
vendored in the installed llama-cpp-python's sdist (downloaded with pip) into
~/.cache/gptcli-bench (nothing built is committed). Then, with the same model
file, thread count and attention setting, it measures:

- native llama-bench: prefill pp512, decode tg128 and tg1024;
- gptcli's engine through `gptcli ask` (streaming, not a TTY): prefill of a
  512-token prompt, decode of 128 and 1,024 tokens, time to first token;
- gptcli's chat with Markdown rendering in a pseudo-terminal (decode);
- whole processes: `gptcli --help`, `gptcli --version`, `gptcli ask -n 1` against
  `llama-completion -n 1`, with peak RSS.

It prints a table of figures and ratios to native and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("GPTCLI_BENCH_CACHE", Path.home() / ".cache" / "gptcli-bench"))
GPTCLI = str(Path(sys.executable).parent / "gptcli")


def build_native() -> Path:
    """llama-bench and llama-completion from the same llama.cpp as the installed wheel."""
    engine = version("llama-cpp-python")
    build = CACHE / f"llama.cpp-{engine}" / "build"
    tools = [build / "bin" / "llama-bench", build / "bin" / "llama-completion"]
    if all(t.exists() for t in tools):
        return build / "bin"
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_python-{engine}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={engine}",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
    source = CACHE / f"llama.cpp-{engine}"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name]
        for member in members:
            member.name = member.name.split("/vendor/llama.cpp/", 1)[1]
        archive.extractall(source, members=members, filter="data")
    subprocess.run(
        [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
        ],
        check=True,
    )
    subprocess.run(
        [
            "cmake",
            "--build",
            str(build),
            "--target",
            "llama-bench",
            "llama-completion",
            "-j",
            str(os.cpu_count() or 2),
        ],
        check=True,
    )
    return build / "bin"


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB, stdout) of one process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    return time.perf_counter() - started, usage.ru_maxrss, out.decode("utf-8", "replace")


def native_bench(binaries: Path, model: str, threads: int, repeats: int) -> dict[str, float]:
    command = [
        str(binaries / "llama-bench"),
        "-m",
        model,
        "-t",
        str(threads),
        "-fa",
        "0",
        "-p",
        "512",
        "-n",
        "128,1024",
        "-r",
        str(repeats),
        "-o",
        "json",
        "--repack",
        "0",
    ]  # extra buffer types off, as gptcli runs here: the AMX kernels crash on this CPU
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, float] = {}
    for row in json.loads(done.stdout):
        name = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        figures[name] = float(row["avg_ts"])
    return figures


def ask_json(args: list[str], stdin: str | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [GPTCLI, "ask", "--json", "-q", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def gptcli_engine(threads: int, repeats: int) -> dict[str, float]:
    prompt = "the " * 473  # one token each: 512 prompt tokens with the chat template
    prompt_tokens = 0
    prefill: list[float] = []
    ttft: list[float] = []
    tg128: list[float] = []
    tg1024: list[float] = []
    common = ["--threads", str(threads), "-t", "0", "--ctx", "2048"]
    for _ in range(repeats):
        data = ask_json([*common, "-n", "1", "Repeat the words."], stdin=prompt)
        prompt_tokens = data["usage"]["prompt_tokens"]
        prefill.append(data["timings"]["prompt_tokens_per_s"])
        ttft.append(data["timings"]["time_to_first_token_s"])
        for count, bucket in ((128, tg128), (1024, tg1024)):
            data = ask_json([*common, "--ignore-eos", "-n", str(count), "Tell me a long story."])
            bucket.append(data["timings"]["tokens_per_s"])
    return {
        "pp512": statistics.median(prefill),
        "tg128": statistics.median(tg128),
        "tg1024": statistics.median(tg1024),
        "ttft_s": statistics.median(ttft),
        "prompt_tokens": prompt_tokens,
    }


def repl_decode(threads: int) -> float:
    sys.path.insert(0, str(ROOT))
    from bench.repl_render import tokens_per_second

    rate, _ = tokens_per_second(["--threads", str(threads), "--ignore-eos"], 1024)
    return rate


def processes(binaries: Path, model: str, threads: int, repeats: int) -> dict[str, Any]:
    rows: dict[str, list[tuple[float, int]]] = {}
    runs = {
        "gptcli --help": [GPTCLI, "--help"],
        "gptcli --version": [GPTCLI, "--version"],
        "gptcli ask -n 1": [GPTCLI, "ask", "-q", "-n", "1", "--threads", str(threads), "Hi"],
        "llama-completion -n 1": [
            str(binaries / "llama-completion"),
            "-m",
            model,
            "-n",
            "1",
            "-t",
            str(threads),
            "-p",
            "Hi",
            "-no-cnv",
            "--no-repack",
            "-fa",
            "off",
        ],
    }
    for _ in range(repeats):
        for name, command in runs.items():
            wall, rss, _ = measure(command)
            rows.setdefault(name, []).append((wall, rss))
    return {
        name: {
            "wall_s": statistics.median(w for w, _ in v),
            "peak_rss_mib": max(r for _, r in v) / 1024,
        }
        for name, v in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-repl", action="store_true")
    args = parser.parse_args()
    from gptcli.models import bundled_model_path

    model = str(bundled_model_path())
    binaries = build_native()
    native = native_bench(binaries, model, args.threads, args.repeats)
    engine = gptcli_engine(args.threads, args.repeats)
    repl = None if args.skip_repl else repl_decode(args.threads)
    whole = processes(binaries, model, args.threads, args.repeats)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "llama_cpp_python": version("llama-cpp-python"),
        "threads": args.threads,
        "native": native,
        "gptcli": engine,
        "gptcli_prompt_tokens": engine.pop("prompt_tokens"),
        "repl_tg1024": repl,
        "ratios": {
            "prefill pp512": engine["pp512"] / native["pp512"],
            "decode tg128": engine["tg128"] / native["tg128"],
            "decode tg1024": engine["tg1024"] / native["tg1024"],
            "chat decode tg1024": (repl / native["tg1024"]) if repl else None,
            "ask -n 1 wall": whole["gptcli ask -n 1"]["wall_s"]
            / whole["llama-completion -n 1"]["wall_s"],
        },
        "processes": whole,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'measure':<24}{'gptcli':>12}{'native':>12}{'ratio':>8}")
    for key, label in (
        ("pp512", "prefill t/s"),
        ("tg128", "decode128 t/s"),
        ("tg1024", "decode1024 t/s"),
    ):
        print(
            f"{label:<24}{engine[key]:>12.1f}{native[key]:>12.1f}{engine[key] / native[key]:>8.2f}"
        )
    if repl:
        ratio = repl / native["tg1024"]
        print(f"{'chat decode1024 t/s':<24}{repl:>12.1f}{native['tg1024']:>12.1f}{ratio:>8.2f}")
    for name, row in whole.items():
        print(f"{name:<24}{row['wall_s'] * 1000:>10.0f}ms{row['peak_rss_mib']:>10.0f}MiB")


if __name__ == "__main__":
    shutil.which("cmake") or sys.exit("cmake is needed to build the native tools")
    main()

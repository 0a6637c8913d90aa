"""gptcli against native llama.cpp, side by side, in one run.

    .venv/bin/python bench/run.py [--repeats 3] [--threads 2]

The first run builds llama-bench and llama-completion from the llama.cpp sources
vendored in the installed llama-cpp-python's sdist (downloaded with pip) into
~/.cache/gptcli-bench (nothing built is committed). Then, with the same model
file, thread count and attention setting, it measures:

- native llama-bench: prefill pp512, decode tg128 and tg1024;
- gptcli's engine through `gptcli ask` (streaming, not a TTY): prefill of a
  512-token prompt, decode of 128 and 1,024 tokens, time to first token;
- gptcli's chat with Markdown rendering in a pseudo-terminal (decode), read by a
  drain that answers cursor queries but does not emulate the screen;
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
# gptcli runs as installed: with its modules' compiled bytecode, which an environment with
# PYTHONDONTWRITEBYTECODE (some containers set it) would have it recompile in every process.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


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


def native_bench(binaries: Path, model: str, threads: int) -> dict[str, float]:
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
        "1",
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


def gptcli_engine(threads: int) -> dict[str, float]:
    """One round of gptcli's figures, through `gptcli ask --json`."""
    prompt = "the " * 473  # one token each: 512 prompt tokens with the chat template
    # --no-cache: the prompt is evaluated, as llama-bench's is, not restored from the prompt
    # cache that an earlier round wrote.
    common = ["--threads", str(threads), "-t", "0", "--no-cache"]
    # llama-bench sizes its context to the test (rounded up to 256 cells), and
    # decoding slows as the context grows: give gptcli the same room.
    data = ask_json([*common, "--ctx", "768", "-n", "1", "Repeat the words."], stdin=prompt)
    figures = {
        "pp512": data["timings"]["prompt_tokens_per_s"],
        "ttft_s": data["timings"]["time_to_first_token_s"],
        "prompt_tokens": data["usage"]["prompt_tokens"],
    }
    for count, ctx in ((128, 256), (1024, 1280)):
        args = ["--ctx", str(ctx), "--ignore-eos", "-n", str(count), "Tell me a long story."]
        figures[f"tg{count}"] = ask_json([*common, *args])["timings"]["tokens_per_s"]
    return figures


def interleaved(
    binaries: Path, model: str, threads: int, repeats: int, chat: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Native and gptcli rounds taken in turn, so that drift on a shared machine hits both."""
    native: list[dict[str, float]] = []
    engine: list[dict[str, float]] = []
    for _ in range(repeats):
        native.append(native_bench(binaries, model, threads))
        engine.append(gptcli_engine(threads))
        if chat:
            engine[-1]["chat_tg1024"] = repl_decode(threads)

    def median(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: statistics.median(row[key] for row in rows) for key in rows[0]}

    return median(native), median(engine)


def repl_decode(threads: int) -> float:
    """Decode speed of a 1,024-token answer in `gptcli chat` with Markdown, in a pty
    drained by a reader that does not emulate the screen (see repl_render.py)."""
    sys.path.insert(0, str(ROOT))
    from bench.repl_render import raw_tokens_per_second

    args = ["--threads", str(threads), "--ctx", "1280", "--ignore-eos"]
    return raw_tokens_per_second(args, 1024)


def chat_prompt(model: str, text: str) -> str:
    """The exact prompt text `gptcli ask TEXT` evaluates: the model's chat template."""
    from gptcli.engine.base import Message
    from gptcli.engine.modelfile import read_model_file
    from gptcli.engine.template import ChatTemplate, prompt_text

    template = read_model_file(Path(model)).chat_template
    assert template is not None
    pieces = ChatTemplate("model file", template, "", "").render([Message("user", text)])
    return prompt_text(pieces)


def processes(binaries: Path, model: str, threads: int, repeats: int) -> dict[str, Any]:
    """Whole processes; the native one-shot gets the same chat-formatted prompt as gptcli."""
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
            chat_prompt(model, "Hi"),
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
    parser.add_argument("--skip-repl", action="store_true", help="no chat-in-a-pty figure")
    args = parser.parse_args()
    from gptcli.models.resolve import bundled_model_path

    model = str(bundled_model_path())
    binaries = build_native()
    native, engine = interleaved(binaries, model, args.threads, args.repeats, not args.skip_repl)
    whole = processes(binaries, model, args.threads, args.repeats)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "llama_cpp_python": version("llama-cpp-python"),
        "threads": args.threads,
        "native": native,
        "gptcli": engine,
        "gptcli_prompt_tokens": int(engine.pop("prompt_tokens")),
        "ratios": {
            "prefill pp512": engine["pp512"] / native["pp512"],
            "decode tg128": engine["tg128"] / native["tg128"],
            "decode tg1024": engine["tg1024"] / native["tg1024"],
            "chat decode tg1024": engine["chat_tg1024"] / native["tg1024"]
            if "chat_tg1024" in engine
            else None,
            "ask -n 1 wall": whole["gptcli ask -n 1"]["wall_s"]
            / whole["llama-completion -n 1"]["wall_s"],
        },
        "processes": whole,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    table = results_table(result)
    print(table)
    update_performance_page(table)


def results_table(result: dict[str, Any]) -> str:
    """The performance table of docs/performance.md, from one run's results."""
    gptcli, native, ratios = result["gptcli"], result["native"], result["ratios"]
    whole = result["processes"]
    ask, completion = whole["gptcli ask -n 1"], whole["llama-completion -n 1"]
    rows = [
        ("prefill, 512-token prompt (tokens/s)", gptcli["pp512"], native["pp512"], "pp512"),
        ("decode, 128 tokens (tokens/s)", gptcli["tg128"], native["tg128"], "tg128"),
        ("decode, 1,024 tokens (tokens/s)", gptcli["tg1024"], native["tg1024"], "tg1024"),
    ]
    lines = ["| measure | gptcli | native | ratio |", "| --- | --- | --- | --- |"]
    for label, ours, theirs, name in rows:
        lines.append(f"| {label} | {ours:.1f} | {theirs:.1f} ({name}) | {ours / theirs:.2f} |")
    if ratios["chat decode tg1024"] is not None:
        chat = gptcli["chat_tg1024"]
        lines.append(
            f"| decode in the chat with Markdown rendering, 1,024 tokens | {chat:.1f} | "
            f"{native['tg1024']:.1f} (tg1024) | {ratios['chat decode tg1024']:.2f} |"
        )
    help_ms = whole["gptcli --help"]["wall_s"] * 1000
    version_ms = whole["gptcli --version"]["wall_s"] * 1000
    lines += [
        f"| `gptcli --help` / `--version` wall time | {help_ms:.0f} ms / {version_ms:.0f} ms | | |",
        f"| `ask -n 1` vs `llama-completion -n 1` wall time, same prompt | "
        f"{ask['wall_s'] * 1000:.0f} ms | {completion['wall_s'] * 1000:.0f} ms | "
        f"{ratios['ask -n 1 wall']:.2f} |",
        f"| peak RSS, `ask -n 1` vs `llama-completion -n 1` | {ask['peak_rss_mib']:.0f} MiB | "
        f"{completion['peak_rss_mib']:.0f} MiB | "
        f"{ask['peak_rss_mib'] / completion['peak_rss_mib']:.2f} |",
    ]
    return "\n".join(lines)


def update_performance_page(table: str) -> None:
    """Replace the table between the bench markers of docs/performance.md."""
    page = ROOT / "docs" / "performance.md"
    text = page.read_text(encoding="utf-8")
    start, end = "<!-- bench/run.py: start -->", "<!-- bench/run.py: end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        page.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    shutil.which("cmake") or sys.exit("cmake is needed to build the native tools")
    main()

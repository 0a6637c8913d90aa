"""`gptcli batch` against answering the same prompts one after another, in one run.

    .venv/bin/python bench/batch.py [--tokens 64] [--prompts 32] [--parallel 1,2,4,8]
        [--batched-bench PATH/TO/llama-batched-bench]

1. Aggregate decode, in process (one model load): for each parallel count P,
   P prompts of T tokens each (end-of-generation ignored, so every answer has T
   tokens) through the batch engine, against the same P answers through the
   single-sequence path (`LlamaBackend.stream`, what `gptcli ask` runs) one
   after another. ``*_tokens_per_s`` is answer tokens over wall time, prompts
   included. ``batch_decode_tokens_per_s`` leaves the prompts out the way
   llama.cpp's S_TG does: the same P prompts are run again with 1 answer token
   each, and the rate is P x (T - 1) tokens over the difference of the walls.
2. With ``--batched-bench``, in the same run and with the same settings
   (threads, no weight repacking, flash attention off, 512-token batches, a
   KV stream per sequence), ``llama-batched-bench -npp PP -ntg T -npl P...``
   where PP is the prompts' mean length in tokens; its S_TG (aggregate decode
   of P sequences) beside gptcli's. Both sides alternate for ``--rounds``
   rounds (default 3) and the medians are reported.
3. End to end, whole processes: N prompts x T tokens through one `gptcli batch`
   against a shell loop of `gptcli ask` (a process and a model load per prompt).

Writes bench/batch-results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPTCLI = str(Path(sys.executable).parent / "gptcli")
TOPICS = ["rain", "sea", "cats", "bread", "bridges", "moon", "violins", "snow", "gardens"]


def prompt(number: int) -> str:
    return f"Write a short story about {TOPICS[number % len(TOPICS)]} (number {number})."


def run_batch(engine_args: tuple[Any, int, int], jobs: list[Any]) -> tuple[float, dict[int, Any]]:
    """Wall time and outcomes of ``jobs`` through a fresh batch engine."""
    from gptcli.engine.base import Cancellation

    backend, parallel, cells = engine_args
    engine = backend.open_slots(parallel, cells)
    started = time.perf_counter()
    outcomes = {o.index: o for o in engine.run(iter(jobs), Cancellation())}
    wall = time.perf_counter() - started
    engine.close()
    return wall, outcomes


def batched_bench(
    binary: str, model: str, threads: int, prompt_tokens: int, tokens: int, counts: list[int]
) -> dict[int, float]:
    """llama-batched-bench's S_TG (aggregate decode tokens/s) for each parallel count."""
    command = [
        binary,
        "-m",
        model,
        "-c",
        str(max(counts) * 1024),
        "-b",
        "512",
        "-ub",
        "512",
        "-t",
        str(threads),
        "-fa",
        "off",
        "-nr",
        "-npp",
        str(prompt_tokens),
        "-ntg",
        str(tokens),
        "-npl",
        ",".join(map(str, counts)),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rates: dict[int, float] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0].isdigit():
            rates[int(cells[2])] = float(cells[7])  # B, S_TG t/s
    return rates


def sequential_row(
    backend: Any, jobs: list[Any], outcomes: dict[int, Any], batched: float
) -> dict[str, Any]:
    """The same jobs one after another through the single-sequence path (`ask`'s)."""
    from gptcli.engine.base import Cancellation, Finished, TextDelta

    produced = sum(o.finished.usage.completion_tokens for o in outcomes.values() if o.finished)
    started = time.perf_counter()
    alone, same = 0, 0
    for job in jobs:
        text = ""
        for event in backend.stream(job.messages, job.options, Cancellation()):
            if isinstance(event, Finished):
                alone += event.usage.completion_tokens
            elif isinstance(event, TextDelta):
                text += event.text
        same += text == outcomes[job.index].text
    sequential = time.perf_counter() - started
    return {
        "parallel": len(jobs),
        "batch_tokens_per_s": round(produced / batched, 1),
        "sequential_tokens_per_s": round(alone / sequential, 1),
        "speedup": round((produced / batched) / (alone / sequential), 2),
        "same_text_as_sequential": f"{same}/{len(jobs)}",
    }


def decode_rates(
    tokens: int, counts: list[int], native: str | None, rounds: int
) -> list[dict[str, Any]]:
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Message
    from gptcli.engine.batch import BatchJob
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path

    model = bundled_model_path()
    backend = LlamaBackend(LoadOptions(path=model, extra_buffers=False))
    options = SamplingOptions(temperature=0, max_tokens=tokens, ignore_eos=True, seed=1)
    warm = SamplingOptions(temperature=0, max_tokens=8)
    for _ in backend.stream([Message("user", prompt(0))], warm, Cancellation()):
        pass  # the first decode after a load is slow; neither side should pay it
    first = SamplingOptions(temperature=0, max_tokens=1, ignore_eos=True, seed=1)
    lengths = [
        len(backend.prompt_for([Message("user", prompt(n))], options.think)[0]) for n in range(8)
    ]
    decode: dict[int, list[float]] = {count: [] for count in counts}
    native_rates: dict[int, list[float]] = {count: [] for count in counts}
    rows: dict[int, dict[str, Any]] = {}
    for round_ in range(rounds):  # alternating, so drifts in the machine's load hit both sides
        for count in counts:
            jobs = [BatchJob(n, (Message("user", prompt(n)),), options) for n in range(count)]
            ones = [replace(j, options=first) for j in jobs]
            prefill, _ = run_batch((backend, count, 1024), ones)
            batched, outcomes = run_batch((backend, count, 1024), jobs)
            decode[count].append(count * (tokens - 1) / (batched - prefill))
            if native:
                mean = round(sum(lengths) / len(lengths))
                rate = batched_bench(native, str(model), backend.threads, mean, tokens, [count])
                native_rates[count].append(rate[count])
            if round_ == 0:
                rows[count] = sequential_row(backend, jobs, outcomes, batched)
            print({"round": round_, "parallel": count, "decode": decode[count][-1]}, flush=True)
    for count in counts:
        row = rows[count]
        row["batch_decode_tokens_per_s"] = round(statistics.median(decode[count]), 1)
        if native_rates[count]:
            row["llama_batched_bench_s_tg"] = round(statistics.median(native_rates[count]), 1)
            row["decode_vs_native"] = round(
                row["batch_decode_tokens_per_s"] / row["llama_batched_bench_s_tg"], 2
            )
        print(row, flush=True)
    backend.close()
    return [rows[count] for count in counts]


def end_to_end(prompts: int, tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "prompts.txt"
        source.write_text("".join(prompt(n) + "\n" for n in range(prompts)))
        out = f"{tmp}/batch.jsonl"
        started = time.perf_counter()
        subprocess.run(
            [
                GPTCLI,
                "batch",
                "--lines",
                str(source),
                "-q",
                "-t",
                "0",
                "-n",
                str(tokens),
                "-o",
                out,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        batch = time.perf_counter() - started
        loop = (
            f'while IFS= read -r p; do "{GPTCLI}" ask -q -t 0 -n {tokens} --json "$p" '
            f"</dev/null >> {tmp}/loop.jsonl; done < {source}"
        )
        started = time.perf_counter()
        subprocess.run(["bash", "-c", loop], check=True, stdin=subprocess.DEVNULL)
        asks = time.perf_counter() - started
    row = {
        "prompts": prompts,
        "tokens": tokens,
        "batch_s": round(batch, 1),
        "ask_loop_s": round(asks, 1),
        "speedup": round(asks / batch, 2),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--parallel", default="1,2,4,8")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--batched-bench", help="path to llama.cpp's llama-batched-bench")
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many rounds")
    args = parser.parse_args()
    counts = [int(c) for c in args.parallel.split(",")]
    results: dict[str, Any] = {}
    if not args.skip_decode:
        results["decode"] = decode_rates(args.tokens, counts, args.batched_bench, args.rounds)
    results["end_to_end"] = end_to_end(args.prompts, args.tokens)
    (ROOT / "bench" / "batch-results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

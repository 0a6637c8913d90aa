"""`gptcli batch` against answering the same prompts one after another, in one run.

    .venv/bin/python bench/batch.py [--tokens 64] [--prompts 32] [--parallel 1,2,4,8]

1. Aggregate decode, in process (one model load): for each parallel count P,
   P prompts of T tokens each (end-of-generation ignored, so every answer has T
   tokens) through the batch engine, against the same P answers through the
   single-sequence path (`LlamaBackend.stream`, what `gptcli ask` runs) one
   after another. The rate is answer tokens over wall time, prompts included.
2. End to end, whole processes: N prompts x T tokens through one `gptcli batch`
   against a shell loop of `gptcli ask` (a process and a model load per prompt).

Writes bench/batch-results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPTCLI = str(Path(sys.executable).parent / "gptcli")
TOPICS = ["rain", "sea", "cats", "bread", "bridges", "moon", "violins", "snow", "gardens"]


def prompt(number: int) -> str:
    return f"Write a short story about {TOPICS[number % len(TOPICS)]} (number {number})."


def decode_rates(tokens: int, counts: list[int]) -> list[dict[str, Any]]:
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Finished, Message, TextDelta
    from gptcli.engine.batch import BatchJob, LlamaBatch
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path

    backend = LlamaBackend(LoadOptions(path=bundled_model_path(), extra_buffers=False))
    options = SamplingOptions(temperature=0, max_tokens=tokens, ignore_eos=True, seed=1)
    warm = SamplingOptions(temperature=0, max_tokens=8)
    for _ in backend.stream([Message("user", prompt(0))], warm, Cancellation()):
        pass  # the first decode after a load is slow; neither side should pay it
    rows = []
    for count in counts:
        jobs = [BatchJob(n, (Message("user", prompt(n)),), options) for n in range(count)]
        engine = LlamaBatch(backend, count, 1024)
        started = time.perf_counter()
        outcomes = {o.index: o for o in engine.run(iter(jobs), Cancellation())}
        batched = time.perf_counter() - started
        produced = sum(o.finished.usage.completion_tokens for o in outcomes.values() if o.finished)
        engine.close()
        started = time.perf_counter()
        alone, same = 0, 0
        for job in jobs:
            text = ""
            for event in backend.stream(job.messages, options, Cancellation()):
                if isinstance(event, Finished):
                    alone += event.usage.completion_tokens
                elif isinstance(event, TextDelta):
                    text += event.text
            same += text == outcomes[job.index].text
        sequential = time.perf_counter() - started
        row = {
            "parallel": count,
            "batch_tokens_per_s": round(produced / batched, 1),
            "sequential_tokens_per_s": round(alone / sequential, 1),
            "speedup": round((produced / batched) / (alone / sequential), 2),
            "same_text_as_sequential": f"{same}/{count}",
        }
        print(row, flush=True)
        rows.append(row)
    backend.close()
    return rows


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
    args = parser.parse_args()
    counts = [int(c) for c in args.parallel.split(",")]
    results: dict[str, Any] = {}
    if not args.skip_decode:
        results["decode"] = decode_rates(args.tokens, counts)
    results["end_to_end"] = end_to_end(args.prompts, args.tokens)
    (ROOT / "bench" / "batch-results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The KV cache's type: its memory at a large window, and what it does to a greedy answer.

Memory: a child process per type loads the bundled model and makes a context of
``--ctx`` cells (llama.cpp clears the whole cache when it makes it, so every page is
touched); the figure is the growth of the child's resident set over that step, which
holds the cache and the compute buffers. Text: ``gptcli ask -t 0`` with the same long
prompt and token budget in each type, compared with f16.

    .venv/bin/python bench/kvtype.py [--ctx 32768] [--tokens 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TYPES = ("f16", "q8_0", "q4_0")
PROMPT = (
    "Write a long, detailed guide to keeping a vegetable garden through the year: soil, "
    "seeds, watering, pests, harvest and winter, with a section for each month."
)
CHILD = """
import json, sys
from gptcli.engine.llama import LlamaBackend, LoadOptions
from gptcli.models.resolve import bundled_model_path

def rss():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

ctx, kv_type = int(sys.argv[1]), sys.argv[2]
backend = LlamaBackend(LoadOptions(bundled_model_path(), ctx=ctx, threads=1, kv_type=kv_type))
before = rss()
context = backend.parallel_context(1, ctx, 512)
after = rss()
print(json.dumps({"rss": after - before, "computed": backend.kv_bytes_per_cell() * ctx}))
"""


def measure_memory(ctx: int, kv_type: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ctx), kv_type],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


def answer(kv_type: str, ctx: int, tokens: int, home: str) -> tuple[str, int]:
    gptcli = Path(sys.executable).with_name("gptcli")
    command = [str(gptcli), "ask", "-q", "--json", "-t", "0", "-n", str(tokens)]
    command += ["--ctx", str(ctx), "--kv-type", kv_type, "--no-cache", PROMPT]
    env = {**os.environ, "GPTCLI_HOME": home}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    record = json.loads(done.stdout)
    return record["text"], record["usage"]["completion_tokens"]


def first_difference(a: str, b: str) -> int | None:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ctx", type=int, default=32768)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    memory: dict[str, list[int]] = {t: [] for t in TYPES}
    computed: dict[str, int] = {}
    for _ in range(args.rounds):  # types alternate, so drift on a shared machine hits each
        for kv_type in TYPES:
            figures = measure_memory(args.ctx, kv_type)
            memory[kv_type].append(figures["rss"])
            computed[kv_type] = figures["computed"]
    f16 = statistics.median(memory["f16"])
    print(f"--ctx {args.ctx}: context's RSS growth (median of {args.rounds}), KV bytes computed")
    for kv_type in TYPES:
        grown = statistics.median(memory[kv_type])
        print(
            f"  {kv_type:5} {grown / 2**20:8.1f} MiB  {grown / f16:.2f}x f16   "
            f"computed {computed[kv_type] / 2**20:7.1f} MiB  "
            f"{computed[kv_type] / computed['f16']:.2f}x"
        )
    with tempfile.TemporaryDirectory() as home:
        texts = {t: answer(t, args.ctx, args.tokens, home) for t in TYPES}
    base, produced = texts["f16"]
    print(f"greedy answer, {produced} tokens in f16 (-n {args.tokens}):")
    for kv_type in TYPES[1:]:
        text, count = texts[kv_type]
        where = first_difference(base, text)
        same = "identical" if where is None else f"differs from character {where} of {len(base)}"
        print(f"  {kv_type:5} {count} tokens, {same}")
        if where is not None:
            print(f"        f16:  {base[max(0, where - 40) : where + 60]!r}")
            print(f"        {kv_type}: {text[max(0, where - 40) : where + 60]!r}")


if __name__ == "__main__":
    main()

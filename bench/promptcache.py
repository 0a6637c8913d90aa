"""The prompt cache across runs: a second `ask` about the same file against the first.

Each round empties the cache, asks one question about a ~3,000-token file (the file's
cells are evaluated and written to the cache), then another question about it (they
are read back). Reported: time to first token from `--json`'s timings and the wall
time of each run, medians over the rounds, and the share of the file's tokens the
second run took from the cache. Greedy, 16 tokens; the text of the second run is
compared with the same question under --no-cache.

    .venv/bin/python bench/promptcache.py [--tokens 3000] [--rounds 3] [--kv-type f16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The ferry left the harbour at {n} minutes past six, loaded with bicycles and crates.",
    "In the {n}th year of the survey the river moved its bed two hundred metres east.",
    "Clause {n}: the tenant shall keep the garden and the gutters in good order.",
    "Sample {n} was stored at four degrees and measured again after a week.",
    "On day {n} the committee agreed to repaint the bridge before the winter.",
]


def write_document(path: Path, tokens: int, count: object) -> int:
    """A text of about ``tokens`` tokens of the bundled model; its exact count."""
    lines: list[str] = []
    n = 0
    while True:
        lines.append(SENTENCES[n % len(SENTENCES)].format(n=n + 1))
        n += 1
        if n % 20 == 0:
            text = "\n".join(lines) + "\n"
            have = count(text)  # type: ignore[operator]
            if have >= tokens:
                path.write_text(text)
                return int(have)


def run(home: str, doc: Path, question: str, *extra: str) -> tuple[dict[str, object], float]:
    gptcli = Path(sys.executable).with_name("gptcli")
    command = [str(gptcli), "ask", "-q", "--json", "-t", "0", "-n", "16", "-f", str(doc)]
    env = {**os.environ, "GPTCLI_HOME": home}
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *extra, question], capture_output=True, text=True, check=True, env=env
    )
    record: dict[str, object] = json.loads(done.stdout)
    return record, time.perf_counter() - start


def timing(record: dict[str, object], name: str) -> float:
    timings = record["timings"]
    assert isinstance(timings, dict)
    return float(timings[name])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kv-type", default="f16")
    args = parser.parse_args()
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path

    counter = LlamaBackend(LoadOptions(bundled_model_path(), ctx=256))
    with tempfile.TemporaryDirectory() as home:
        doc = Path(home) / "document.txt"
        file_tokens = write_document(
            doc, args.tokens, lambda text: len(counter.tokenize(text, special=False))
        )
        counter.close()
        extra = ("--kv-type", args.kv_type, "--ctx", "4096")
        cold: list[tuple[float, float]] = []
        warm: list[tuple[float, float]] = []
        shares: list[float] = []
        for _ in range(args.rounds):
            subprocess.run(
                [str(Path(sys.executable).with_name("gptcli")), "cache", "clear", "-q"],
                env={**os.environ, "GPTCLI_HOME": home},
                check=True,
            )
            first, wall = run(home, doc, "Summarise this in one sentence.", *extra)
            cold.append((timing(first, "time_to_first_token_s"), wall))
            second, wall = run(home, doc, "Which clause mentions the garden?", *extra)
            warm.append((timing(second, "time_to_first_token_s"), wall))
            shares.append(timing(second, "cached_prompt_tokens") / file_tokens)
        fresh, _ = run(home, doc, "Which clause mentions the garden?", *extra, "--no-cache")
    same = "identical" if fresh["text"] == second["text"] else "DIFFERENT"
    cold_ttft = statistics.median(t for t, _ in cold)
    warm_ttft = statistics.median(t for t, _ in warm)
    print(f"file: {file_tokens} tokens, --kv-type {args.kv_type}, medians of {args.rounds}")
    print(
        f"  first ask:  time to first token {cold_ttft:.2f} s, "
        f"wall {statistics.median(w for _, w in cold):.2f} s"
    )
    print(
        f"  second ask: time to first token {warm_ttft:.2f} s, "
        f"wall {statistics.median(w for _, w in warm):.2f} s"
    )
    print(
        f"  ratio {warm_ttft / cold_ttft:.3f}x; cached {min(shares):.1%} of the file's tokens; "
        f"text {same} to --no-cache"
    )


if __name__ == "__main__":
    main()

"""Time to first token across the turns of one conversation (KV prefix reuse).

    .venv/bin/python bench/turns.py [--turns 20] [--answer-tokens 48]

Prints the time to first token of every turn and the ratio of the last turn to
the first, with the prompt tokens evaluated and reused from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.engine.base import Cancellation
from gptcli.engine.cpuprobe import decide_extra_buffers
from gptcli.engine.llama import LlamaBackend, LoadOptions
from gptcli.engine.modelfile import read_model_file
from gptcli.models.resolve import bundled_model_path
from gptcli.paths import app_paths

QUESTIONS = [
    "Tell me one fact about the sea.",
    "Name a famous painter.",
    "What is a good breakfast?",
    "Give me a word that rhymes with cat.",
    "Name a planet.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--answer-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = bundled_model_path()
    info = read_model_file(path)
    verdict = decide_extra_buffers(path, info.quantization, app_paths().cache_dir, os.environ)
    backend = LlamaBackend(
        LoadOptions(path, ctx=8192, extra_buffers=verdict.extra_buffers), info=info
    )
    options = SamplingOptions(temperature=0, max_tokens=args.answer_tokens)
    runs: list[list[dict[str, float]]] = []
    for _ in range(args.repeats):
        conversation = Conversation()
        turns = []
        for turn in range(args.turns):
            reply = Reply()
            question = QUESTIONS[turn % len(QUESTIONS)]
            for _event in conversation.send(question, backend, options, Cancellation(), reply):
                pass
            assert reply.finished is not None
            t = reply.finished.timings
            turns.append(
                {
                    "turn": turn + 1,
                    "ttft_ms": t.time_to_first_token * 1000,
                    "prompt_tokens": reply.finished.usage.prompt_tokens,
                    "evaluated": t.prompt_tokens_evaluated,
                    "reused": t.cached_tokens,
                }
            )
        runs.append(turns)
        backend.scheduler.forget(0, 0)  # the next repeat starts cold, like a new session
    median = [
        {**runs[0][i], "ttft_ms": statistics.median(r[i]["ttft_ms"] for r in runs)}
        for i in range(args.turns)
    ]
    for row in median:
        print(
            f"turn {row['turn']:>2}: ttft {row['ttft_ms']:6.1f} ms"
            f"  prompt {row['prompt_tokens']:>5}  evaluated {row['evaluated']:>4}"
            f"  reused {row['reused']:>5}"
        )
    ratio = median[-1]["ttft_ms"] / median[0]["ttft_ms"]
    print(
        json.dumps(
            {
                "turn1_ttft_ms": median[0]["ttft_ms"],
                "last_ttft_ms": median[-1]["ttft_ms"],
                "ratio": round(ratio, 3),
                "turns": args.turns,
                "repeats": args.repeats,
            }
        )
    )
    backend.close()


if __name__ == "__main__":
    main()

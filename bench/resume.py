"""Resuming a long conversation: time to first token with the saved KV state, without
it, and for a fresh one-line prompt.

    .venv/bin/python bench/resume.py [--tokens 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.engine.base import Cancellation
from gptcli.engine.cpuprobe import decide_extra_buffers
from gptcli.engine.llama import LlamaBackend, LoadOptions
from gptcli.engine.modelfile import read_model_file
from gptcli.models.resolve import bundled_model_path
from gptcli.paths import app_paths
from gptcli.store.snapshot import load_snapshot, save_snapshot

QUESTION = "Name the capital city of France."
FILLER = "Tell me a fact about the number {n}."


def backend() -> LlamaBackend:
    path = bundled_model_path()
    info = read_model_file(path)
    verdict = decide_extra_buffers(path, info.quantization, app_paths().cache_dir, os.environ)
    options = LoadOptions(path, ctx=4096, extra_buffers=verdict.extra_buffers)
    return LlamaBackend(options, info=info)


def ttft(engine: LlamaBackend, conversation: Conversation) -> tuple[float, str]:
    reply = Reply()
    options = SamplingOptions(temperature=0, max_tokens=24)
    for _ in conversation.send(QUESTION, engine, options, Cancellation(), reply):
        pass
    assert reply.finished is not None
    conversation.undo()
    return reply.finished.timings.time_to_first_token, reply.text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    engine = backend()
    history = Conversation()
    n = 0
    while engine.count_tokens(history.as_messages()) < args.tokens:
        n += 1
        for _ in history.send(
            FILLER.format(n=n),
            engine,
            SamplingOptions(temperature=0, max_tokens=60),
            Cancellation(),
            Reply(),
        ):
            pass
    prompt_tokens = engine.count_tokens(history.as_messages())
    snapshot = Path(tempfile.mkdtemp()) / "s.kv"
    saved = save_snapshot(snapshot, engine, "bench")
    engine.close()
    results: dict[str, list[float]] = {"snapshot": [], "reprocess": [], "fresh": []}
    texts = set()
    for _ in range(args.repeats):
        for mode in results:
            engine = backend()
            if mode == "snapshot":
                assert load_snapshot(snapshot, engine, "bench") == saved
            conversation = (
                Conversation() if mode == "fresh" else Conversation(messages=list(history.messages))
            )
            seconds, text = ttft(engine, conversation)
            if mode != "fresh":
                texts.add(text)
            results[mode].append(seconds * 1000)
            engine.close()
    medians = {mode: round(statistics.median(v), 1) for mode, v in results.items()}
    print(
        json.dumps(
            {
                "history_tokens": prompt_tokens,
                "snapshot_tokens": saved,
                "snapshot_bytes": snapshot.stat().st_size,
                "ttft_ms": medians,
                "snapshot_vs_fresh": round(medians["snapshot"] / medians["fresh"], 2),
                "same_continuation": len(texts) == 1,
            }
        )
    )


if __name__ == "__main__":
    main()

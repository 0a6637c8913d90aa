"""Speculation against none: decode speed of copy-heavy and free answers.

    .venv/bin/python bench/speculate.py [--rounds 5] [--threads N] [--tokens 300]
    .venv/bin/python bench/speculate.py --draft smollm2 [--draft-max 16] [...]

One process, the bundled model, greedy. Each round answers every task with
``--speculate off``, ``ngram`` and ``auto`` in turn (with ``--draft``: ``off``
and ``draft``, the draft model named as for ``-m``), the order rotating, so the
machine's other work falls on all modes alike; the medians of the rounds' decode
tokens/s are printed as ratios to ``off``, with whether the texts were identical
and the drafted/accepted counts. A draft model evaluates the prompt after the
first token, so its prompt time counts as decode time here (its context keeps the
prefix the tasks share, the chat template's opening). Tasks: repeating a
~400-token passage, editing a 150-line code file, and free writing (nothing to copy).
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace

from gptcli.config import SamplingOptions, SpeculateMode
from gptcli.engine.base import Cancellation, Finished, Message, TextDelta

PASSAGE = " ".join(
    [
        "The lighthouse keeper climbed the spiral stairs every evening at dusk.",
        "He trimmed the wick, polished the great lens, and wrote the weather in a",
        "leather logbook. Ships passed far out at sea, and none of their crews ever",
        "knew his name. In winter the storms came from the north and the spray",
        "reached the gallery windows; in summer the fog rolled in before dawn and",
        "the horn sounded every thirty seconds until noon.",
    ]
    * 3
)
CODE = "\n".join(
    f"def step_{i}(value):\n    total = value * {i} + {i % 7}\n    return total\n"
    for i in range(38)
)
TASKS = {
    "repeat": f"Repeat this text exactly:\n\n{PASSAGE}",
    "edit code": f"Rename every function step_N to stage_N in this file:\n\n{CODE}",
    "free writing": "Write a short story about a fox who learns to play the violin.",
}
MODES: tuple[SpeculateMode, ...] = ("off", "ngram", "auto")


def answer(backend: object, prompt: str, options: SamplingOptions) -> tuple[str, Finished]:
    text, done = "", None
    for event in backend.stream([Message("user", prompt)], options, Cancellation()):  # type: ignore[attr-defined]
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            done = event
    assert done is not None
    return text, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--draft", default=None, help="a draft model: compare draft with off")
    parser.add_argument("--draft-max", type=int, default=16)
    args = parser.parse_args()
    from gptcli.engine.draft import DraftOptions
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path, resolve_model

    draft = DraftOptions(resolve_model(args.draft), args.draft_max) if args.draft else None
    modes: tuple[SpeculateMode, ...] = ("off", "draft") if draft else MODES
    backend = LlamaBackend(LoadOptions(bundled_model_path(), threads=args.threads, draft=draft))
    base = SamplingOptions(temperature=0, max_tokens=args.tokens)
    rates: dict[tuple[str, str], list[float]] = {}
    texts: dict[tuple[str, str], set[str]] = {}
    counts: dict[tuple[str, str], tuple[int, int, int]] = {}
    for round_ in range(args.rounds):
        order = modes[round_ % len(modes) :] + modes[: round_ % len(modes)]
        for task, prompt in TASKS.items():
            for mode in order:
                # Each answer's prompt is evaluated whole, as in a fresh `ask`: a prefix kept
                # from another answer was computed in other batches, whose rounding may turn
                # a near tie the other way, speculation or not.
                backend.scheduler.forget(0, 0)
                text, done = answer(backend, prompt, replace(base, speculate=mode))
                key = (task, mode)
                rates.setdefault(key, []).append(done.decode_tokens_per_second)
                texts.setdefault(key, set()).add(text)
                t = done.timings
                counts[key] = (done.usage.completion_tokens, t.drafted, t.accepted)
    print(f"threads {backend.threads}, load {os.getloadavg()[0]:.1f}, {args.rounds} rounds")
    for task in TASKS:
        plain = statistics.median(rates[(task, "off")])
        for mode in modes:
            key = (task, mode)
            median = statistics.median(rates[key])
            same = texts[key] == texts[(task, "off")]
            tokens, drafted, accepted = counts[key]
            print(
                f"{task:13} {mode:5} {median:7.1f} t/s  {median / plain:5.2f}x  "
                f"tokens {tokens:4}  drafted {drafted:4}  accepted {accepted:4}  "
                f"{'same text' if same else 'TEXT DIFFERS'}"
            )
    backend.close()


if __name__ == "__main__":
    main()

"""Host time per generated token: everything but the model's arithmetic.

    .venv/bin/python bench/hostcost.py [--tokens 500] [--rounds 5] [--compare DIR]
                                       [--stop S] [--through engine|ask]

How it is measured: in this process only, the two calls of the bindings
(``llama_cpp.llama_cpp``) that do the model's work are replaced: ``llama_decode``
returns at once and ``llama_sampler_sample`` replays the tokens of a fixed
English text. Everything else is real: the bundled model's vocabulary, token
pieces, the text stream and stop strings, the events, and, with ``--through ask``,
``gptcli ask --plain`` writing the answer (to /dev/null). An answer's window
opens when the engine yields its first text and closes when the consumer, done
with the ``Finished`` event, asks for the next one; the window's wall time divided
by the tokens sampled in it is the host's time per token: the Python of the loop
and its consumer, plus the small C calls it makes (end-of-generation checks,
token pieces), plus two replaced calls (about 0.2 us together). On a GPU this is
the time the host needs per token besides waiting for the logits.

Why replay rather than time the real decode and subtract: a real decode takes
milliseconds here on a shared machine, and its worker threads and the machine's
other jobs preempt the Python thread by more than the figure being measured.
Replayed, one process streams several answers (``--streams``) and keeps the
least disturbed.

With ``--compare DIR``, the same measurement of DIR/src (another checkout, say
main) runs in alternating rounds, each round in a fresh process, and the medians
of the rounds are printed side by side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Tell me a long story about a lighthouse keeper and the sea."


REPLAYED = (
    "The keeper climbed the hundred and twelve steps every evening, lit the lamp, and wrote "
    "in the log what the sea had done that day: grey swell from the west, a fishing boat "
    "late home, gulls on the rail. In winter the storms came one after another — façades "
    "of spray, the glass humming — and he counted the seconds between the flashes, 7½ each.\n\n"
)


class Counter:
    """Tokens sampled since the last reset."""

    def __init__(self) -> None:
        self.sampled = 0


def time_answers(counter: Counter) -> list[tuple[int, int]]:
    """Wrap the engine's streams: per answer, (wall time in ns, tokens sampled).

    An answer's window opens when the engine yields its first text and closes when
    the consumer, done with the ``Finished`` event, asks for the next one.
    """
    from gptcli.engine.base import Event, TextDelta
    from gptcli.engine.llama import LlamaBackend

    windows: list[tuple[int, int]] = []
    original = LlamaBackend.stream
    now = time.perf_counter_ns

    def stream(self: Any, *args: Any) -> Iterator[Event]:
        events = original(self, *args)

        def timed() -> Iterator[Event]:
            start = 0
            for event in events:
                if not start and isinstance(event, TextDelta):
                    counter.sampled = 0
                    start = now()
                yield event
            wall = now() - start
            windows.append((wall, counter.sampled))

        return timed()

    LlamaBackend.stream = stream  # type: ignore[method-assign, assignment]
    return windows


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One process's least disturbed figures for the sources it imported."""
    from gptcli.engine import native
    from gptcli.engine.llama import LlamaBackend

    lib = native.bindings()
    counter = Counter()
    replay: Iterator[int] = iter(())
    original_init = LlamaBackend.__init__

    def init(self: Any, *a: Any, **k: Any) -> None:
        nonlocal replay
        original_init(self, *a, **k)
        replay = itertools.cycle(self.tokenize(REPLAYED, special=False))

    def sample(sampler: Any, ctx: Any, index: int) -> int:
        counter.sampled += 1
        return next(replay)

    def decode(ctx: Any, batch: Any) -> int:
        return 0

    LlamaBackend.__init__ = init  # type: ignore[method-assign]
    lib.llama_decode = decode
    lib.llama_sampler_sample = sample
    windows = time_answers(counter)
    if args.through == "ask":
        answer_with_ask(args)
    else:
        answer_with_engine(args)
    per_token = [wall / sampled / 1000 for wall, sampled in windows[1:]]  # 1st: warm-up
    return {"host_us_per_token": min(per_token), "tokens": windows[-1][1]}


def answer_with_engine(args: argparse.Namespace) -> None:
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Message
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path

    backend = LlamaBackend(LoadOptions(bundled_model_path(), threads=2, extra_buffers=False))
    options = SamplingOptions(
        temperature=0, max_tokens=args.tokens, ignore_eos=True, stop=tuple(args.stop)
    )
    for _ in range(args.streams + 1):
        for _event in backend.stream([Message("user", PROMPT)], options, Cancellation()):
            pass
    backend.close()


def answer_with_ask(args: argparse.Namespace) -> None:
    """``gptcli ask --plain`` in this process, its answer written to /dev/null."""
    from gptcli.cli.app import run

    command = ["ask", "--plain", "-q", "--threads", "2", "--ignore-eos", "-t", "0"]
    command += ["-n", str(args.tokens)]
    for stop in args.stop:
        command += ["--stop", stop]
    stdout = sys.stdout
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        sys.stdout = devnull
        try:
            for _ in range(args.streams + 1):
                if run([*command, PROMPT]) != 0:
                    raise SystemExit("gptcli ask failed")
        finally:
            sys.stdout = stdout


def run_round(src: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", "--tokens", str(args.tokens)]
    command += ["--streams", str(args.streams), "--through", args.through]
    for stop in args.stop:
        command += ["--stop", stop]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer")
    parser.add_argument("--streams", type=int, default=5, help="answers per process")
    parser.add_argument("--rounds", type=int, default=5, help="processes per source tree")
    parser.add_argument("--stop", action="append", default=[], help="a stop string")
    parser.add_argument(
        "--through", choices=["engine", "ask"], default="engine", help="what consumes the answer"
    )
    parser.add_argument("--compare", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    sources = {"this": ROOT / "src"}
    if args.compare:
        sources = {"compare": args.compare.resolve() / "src", **sources}
    results: dict[str, list[float]] = {name: [] for name in sources}
    for round_ in range(args.rounds):
        for name, src in sources.items():
            figures = run_round(src, args)
            results[name].append(figures["host_us_per_token"])
            print(
                f"round {round_ + 1} {name:>7}: {figures['host_us_per_token']:6.2f} us/token",
                file=sys.stderr,
            )
    summary = {
        name: {
            "host_us_per_token": round(statistics.median(values), 2),
            "src": str(sources[name]),
        }
        for name, values in results.items()
    }
    print(
        json.dumps(
            {"through": args.through, "tokens": args.tokens, "stop": args.stop, **summary},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

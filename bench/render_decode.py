"""What rendering costs the decode loop of the chat, per token, at GPU speed.

    .venv/bin/python bench/render_decode.py [--tokens 2000] [--rate 600]

A fake token source stands in for the model: each token's "decode" takes 1/rate s
with the GIL released (as llama_decode does, through ctypes) while the previous
token's text goes to the renderer as the REPL hands it over (``renderer.feed``),
so a token takes the longer of the two, as in the pipelined decode loop. The
time spent inside ``feed`` on the decoding thread is the decode-path cost per
token; the wall time of the whole answer against a run with no renderer shows
what the renderer takes from decoding in all (a render thread still competes
for the GIL and the cores). Renderers: ``inline``, the Markdown renderer called
on the decode thread (the chat before); ``paced``, the same renderer fed from a
thread of its own (the chat now); ``none``, no rendering.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from gptcli.terminal.paced import PacedRenderer
from gptcli.terminal.render import MarkdownRenderer, Renderer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.render import reply_text


class _Nothing:
    def feed(self, text: str) -> None:
        pass

    def finish(self) -> None:
        pass


def decode(renderer: Renderer, pieces: list[str], rate: float) -> dict[str, float]:
    """Feed ``pieces`` at ``rate`` a second; the decode path's cost and the wall time."""
    interval = 1 / rate
    in_feed = 0.0
    started = time.perf_counter()
    for piece in pieces:
        # The decode of the next token is launched, then the host hands this one on:
        # a token takes the longer of the two (the pipelined loop of engine/llama.py).
        launched = time.perf_counter()
        renderer.feed(piece)
        done = time.perf_counter()
        in_feed += done - launched
        time.sleep(max(0.0, launched + interval - done))  # GPU still busy, GIL released
    before = time.perf_counter()
    renderer.finish()
    final = time.perf_counter() - before
    wall = time.perf_counter() - started
    return {
        "feed_us_per_token": round(in_feed / len(pieces) * 1e6, 1),
        "final_render_ms": round(final * 1000, 1),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(len(pieces) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=600.0, help="tokens/s of the fake source")
    args = parser.parse_args()
    text = reply_text(args.tokens)
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)][: args.tokens]

    def console() -> Console:
        return Console(file=io.StringIO(), width=100, height=40, force_terminal=True)

    results = {
        "tokens": len(pieces),
        "rate_tokens_per_s": args.rate,
        "none": decode(_Nothing(), pieces, args.rate),
        "inline": decode(MarkdownRenderer(console()), pieces, args.rate),
        "paced": decode(PacedRenderer(MarkdownRenderer(console())), pieces, args.rate),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Cost of streaming Markdown rendering for a long reply, renderer on vs off.

    .venv/bin/python bench/render.py [--tokens 2000]

Feeds a synthetic Markdown reply (paragraphs, lists, code blocks) in
token-sized pieces to the terminal renderer and to the plain renderer, writing
to an in-memory terminal, at the model's pace, and prints the CPU time each
used (the background refresh thread included) in all and per token.
"""

from __future__ import annotations

import argparse
import io
import json
import time

from rich.console import Console

from gptcli.terminal.render import MarkdownRenderer, PlainRenderer, Renderer

PARAGRAPH = (
    "The **quick** brown fox jumps over the lazy dog while the *committee* debates "
    "whether `foxes` should be allowed in the garden at all, given the history of "
    "such decisions and the many opinions expressed over the years. "
)
LIST = "- first point about the garden\n- second point, with `code`\n- third point\n"
CODE = "```python\ndef garden(fox: str) -> bool:\n    return fox != 'lazy'\n```\n"


def reply_text(tokens: int) -> str:
    parts: list[str] = []
    while sum(len(p) for p in parts) / 4 < tokens:
        parts += [f"## Section {len(parts) // 4 + 1}", PARAGRAPH * 2, LIST, CODE]
    return "\n\n".join(parts)


def feed(renderer: Renderer, text: str, rate: float, piece: int = 4) -> float:
    """CPU seconds (all threads, Live's refresher included) spent rendering ``text``.

    With ``rate`` > 0 pieces arrive at that many per second, as from the model.
    """
    started = time.process_time()
    interval = 1 / rate if rate > 0 else 0.0
    next_at = time.perf_counter()
    for start in range(0, len(text), piece):
        renderer.feed(text[start : start + piece])
        if interval:
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
    renderer.finish()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=85.0, help="tokens/s; 0 = flat out")
    args = parser.parse_args()
    text = reply_text(args.tokens)
    pieces = len(text) // 4
    console = Console(file=io.StringIO(), width=100, height=40, force_terminal=True)
    markdown = feed(MarkdownRenderer(console), text, args.rate)
    plain = feed(PlainRenderer(io.StringIO()), text, args.rate)
    result = {
        "tokens": pieces,
        "rate_tokens_per_s": args.rate,
        "wall_s_at_rate": round(pieces / args.rate, 1) if args.rate else None,
        "markdown_s": round(markdown, 3),
        "plain_s": round(plain, 4),
        "markdown_ms_per_token": round(markdown / pieces * 1000, 3),
        "plain_ms_per_token": round(plain / pieces * 1000, 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

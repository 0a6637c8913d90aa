"""Decode speed in the REPL with Markdown rendering on vs --plain, in a real pty.

    .venv/bin/python bench/repl_render.py [--tokens 1000] [--repeats 3]

Runs `gptcli chat` in a pseudo-terminal (needs the test extras: pexpect, pyte),
asks for a long answer, and reads tokens/s from /stats.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.terminal import Terminal

PROMPT = "Write a very long essay about the history of the Roman Empire."


def tokens_per_second(extra: list[str], tokens: int) -> tuple[float, int]:
    exe = shutil.which("gptcli", path=str(Path(sys.executable).parent)) or "gptcli"
    argv = [exe, "chat", "-t", "0", "--seed", "1", "-n", str(tokens), "--no-history", *extra]
    term = Terminal(argv, {**os.environ, "TERM": "xterm-256color"}, rows=40, cols=100)
    try:
        term.wait_prompt(1)
        term.type_line(PROMPT)
        term.wait_prompt(2, timeout=300)
        term.type_line("/stats")
        screen = term.wait_text("tokens/s")
        match = re.search(r"last answer: (\d+) tokens, ([\d.]+) tokens/s", screen)
        assert match, screen
        return float(match[2]), int(match[1])
    finally:
        term.close()


def raw_tokens_per_second(extra: list[str], tokens: int) -> float:
    """The same measurement with a reader that only drains the pty and answers cursor
    queries, as a terminal does, without emulating the screen in Python: pyte's parsing
    ran on the same cores as llama.cpp and took a few percent of its time."""
    import pexpect

    exe = shutil.which("gptcli", path=str(Path(sys.executable).parent)) or "gptcli"
    argv = ["chat", "-t", "0", "--seed", "1", "-n", str(tokens), "--no-history", *extra]
    env = {**os.environ, "TERM": "xterm-256color"}
    child = pexpect.spawn(exe, argv, env=env, dimensions=(40, 100), encoding=None, timeout=120)
    seen = bytearray()

    def read_until(pattern: bytes, count: int = 1) -> None:
        while seen.count(pattern) < count:
            try:
                chunk = child.read_nonblocking(65536, timeout=120)
            except pexpect.EOF:
                raise AssertionError(seen[-2000:].decode("utf-8", "replace")) from None
            if b"\x1b[6n" in chunk:
                child.send(b"\x1b[1;1R")
            seen.extend(chunk)

    try:
        read_until(b">>>")
        child.send(PROMPT.encode() + b"\r")
        read_until(b"tok/s", 1)  # the toolbar shows the answer's speed once it ends
        child.send(b"/stats\r")
        read_until(b"tokens/s")
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(seen)).decode("utf-8", "replace")
        match = re.search(r"last answer: (\d+) tokens, ([\d.]+) tokens/s", text)
        assert match, text[-2000:]
        return float(match[2])
    finally:
        child.terminate(force=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rendered, plain = [], []
    produced = 0
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        rate, produced = tokens_per_second([], args.tokens)
        rendered.append(rate)
        plain.append(tokens_per_second(["--plain"], args.tokens)[0])
    result = {
        "answer_tokens": produced,
        "markdown_tokens_per_s": statistics.median(rendered),
        "plain_tokens_per_s": statistics.median(plain),
        "ratio": round(statistics.median(rendered) / statistics.median(plain), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Same seed, same text: across processes, and before and after engine changes.

``tests/golden_outputs.json`` holds answers recorded with an earlier engine, one
recording per llama.cpp build and CPU. When the engine changes (a faster decode loop,
lazier imports), these tests prove the text did not. Floating-point results depend on
the build and the CPU's instruction set, so the answers are compared with the recording
made where both match, if there is one; record this machine's (beside the others) with
the engine before the change:

    .venv/bin/python -m tests.test_determinism --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WORKER_THREADS, Gptcli, gptcli_executable
from tests.terminal import Terminal

GOLDEN = Path(__file__).with_name("golden_outputs.json")
COMMON = ["--threads", str(WORKER_THREADS or 2), "--plain", "-q"]
CLI_CASES: list[list[str]] = [
    ["-t", "0", "-n", "24", "Name the capital city of France."],
    ["--seed", "7", "-t", "0.8", "-n", "48", "Tell me a short story about a fox."],
    ["--seed", "123", "-t", "1.1", "--top-k", "0", "--repeat-penalty", "1.3", "-n", "48",
     "Write a haiku about rain."],
    ["--seed", "5", "-t", "0.7", "-n", "40", "-s", "You are a pirate.",
     "Who wrote Romeo and Juliet?"],
]  # fmt: skip
CONVERSATION: list[tuple[str, int, float]] = [
    ("Who wrote Romeo and Juliet?", 11, 0.0),
    ("Tell me one more play by the same author.", 12, 0.7),
    ("Summarise our conversation in one sentence.", 13, 0.9),
]


def environment() -> str:
    """The build and CPU that decide the floating-point results."""
    from gptcli.engine.cpuprobe import cpu_flags

    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    return f"llama-cpp-python {version('llama-cpp-python')}, cpu {flags}"


def converse(model: Path) -> list[str]:
    """Three turns in one process, so the later turns reuse the KV cache."""
    from gptcli.config import SamplingOptions
    from gptcli.conversation.chat import Conversation, Reply
    from gptcli.engine.base import Cancellation, TextDelta
    from gptcli.engine.llama import LlamaBackend, LoadOptions

    backend = LlamaBackend(LoadOptions(model, threads=WORKER_THREADS or 2, extra_buffers=False))
    try:
        conversation = Conversation(system="You are a helpful assistant.")
        answers = []
        for text, seed, temperature in CONVERSATION:
            options = SamplingOptions(temperature=temperature, seed=seed, max_tokens=40)
            reply = Reply()
            for event in conversation.send(text, backend, options, Cancellation(), reply):
                assert not isinstance(event, TextDelta) or event.text
            answers.append(reply.text)
        return answers
    finally:
        backend.close()


def recordings() -> list[dict[str, Any]]:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return list(data["recordings"])


def load_golden() -> dict[str, Any]:
    here = environment()
    found = [r for r in recordings() if r["environment"] == here]
    if not found:
        known = "; ".join(r["environment"] for r in recordings())
        pytest.skip(f"answers were recorded on {known}, this is {here}")
    return dict(found[0])


@pytest.mark.parametrize("index", range(len(CLI_CASES)))
def test_ask_answers_match_the_recording(gptcli: Gptcli, index: int) -> None:
    golden = load_golden()
    done = gptcli("ask", *COMMON, *CLI_CASES[index])
    assert done.returncode == 0, done.stderr
    assert done.stdout == golden["cli"][index]


def test_conversation_with_cache_reuse_matches_the_recording(bundled_model: Path) -> None:
    golden = load_golden()
    assert converse(bundled_model) == golden["conversation"]


def test_the_same_seed_gives_the_same_text_in_another_process(gptcli: Gptcli) -> None:
    args = ["ask", *COMMON, "-t", "1.0", "-n", "32", "Invent a name for a cat."]
    first = gptcli(*args, "--seed", "99")
    again = gptcli(*args, "--seed", "99")
    other = gptcli(*args, "--seed", "100")
    assert first.returncode == again.returncode == other.returncode == 0
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout


FRONT_ENDS = ["--seed", "7", "-t", "0.9", "-n", "24"]
FIRST, SECOND = "Tell me a short story about a fox.", "Give the story a title."


def chat_answers(gptcli: Gptcli, session: str) -> list[str]:
    """Two turns typed into the chat in a pseudo-terminal, as saved in its session."""
    env = {**gptcli.env, "TERM": "xterm-256color"}
    args = [gptcli_executable(), "chat", "--no-history", "--resume", session, *FRONT_ENDS]
    term = Terminal(args, env)
    try:
        term.wait_prompt(1)
        for turn, question in enumerate((FIRST, SECOND), start=2):
            term.type_line(question)
            term.wait_prompt(turn)
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    saved = json.loads((gptcli.home / "data" / "sessions" / f"{session}.json").read_text())
    return [m["content"] for m in saved["messages"] if m["role"] == "assistant"]


def test_one_seed_gives_one_text_through_every_front_end(gptcli: Gptcli) -> None:
    """The recordings above hold only on their own build and CPU; this holds on any: a
    sampled answer (temperature 0.9, seed 7) is the same text from `ask`, the chat,
    `batch` at --parallel 1, and a second `ask --session` turn that resumes from the
    first one's KV snapshot equals the chat's second turn."""
    chat = chat_answers(gptcli, "chat")
    asked = gptcli("ask", "--json", *FRONT_ENDS, FIRST)
    item = json.dumps({"id": "fox", "prompt": FIRST}) + "\n"
    batch = gptcli("batch", "--parallel", "1", *FRONT_ENDS, input=item)
    first = gptcli("ask", "--session", "s", "--json", *FRONT_ENDS, FIRST)
    resumed = gptcli("ask", "--session", "s", "--json", *FRONT_ENDS, SECOND)
    for done in (asked, batch, first, resumed):
        assert done.returncode == 0, done.stderr
    assert len(chat) == 2 and all(chat), chat
    assert json.loads(asked.stdout)["text"] == chat[0]
    assert json.loads(batch.stdout)["text"] == chat[0]
    assert json.loads(first.stdout)["text"] == chat[0]
    second = json.loads(resumed.stdout)
    assert second["timings"]["cached_prompt_tokens"] > 0  # it did resume from the snapshot
    assert second["text"] == chat[1]
    other = gptcli("ask", "--json", "--seed", "8", *FRONT_ENDS[2:], FIRST)
    assert json.loads(other.stdout)["text"] != chat[0]  # the seed does decide the text


def record() -> None:
    import subprocess

    from gptcli.models.resolve import bundled_model_path
    from tests.conftest import gptcli_executable

    answers = []
    for case in CLI_CASES:
        done = subprocess.run(
            [gptcli_executable(), "ask", *COMMON, *case],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        answers.append(done.stdout)
    data = {
        "environment": environment(),
        "cli": answers,
        "conversation": converse(bundled_model_path()),
    }
    others = [r for r in recordings() if r["environment"] != data["environment"]]
    text = json.dumps({"recordings": [*others, data]}, indent=1, ensure_ascii=False)
    GOLDEN.write_text(text + "\n", encoding="utf-8")
    print(json.dumps(data, indent=1, ensure_ascii=False))


if __name__ == "__main__" and "--record" in sys.argv:
    record()


@pytest.mark.slow
def test_a_growing_context_answers_as_a_full_size_one(
    bundled_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The context starts small (512 cells here, 1,024 in the product) and doubles as the
    conversation fills it, carrying its cache over: in the middle of an answer (turn 1) and
    of a prompt (turn 2). The answers must equal those of a context allocated at full size
    from the start. 512 is the smallest start with the product's batch size (512), so the
    prompts are evaluated in the same batches either way."""
    from gptcli.config import SamplingOptions
    from gptcli.conversation.chat import Conversation, Reply
    from gptcli.engine import llama
    from gptcli.engine.base import Cancellation

    document = " ".join(f"Item {n} is a {'red' if n % 3 else 'blue'} box." for n in range(50))
    turns = [
        (f"{document}\nList the blue boxes, one per line.", 0.0, 160),
        (f"{document}\nWhich item numbers are red?", 0.8, 40),
    ]

    def converse() -> tuple[list[str], list[tuple[int, int, int]]]:
        backend = llama.LlamaBackend(
            llama.LoadOptions(bundled_model, threads=WORKER_THREADS, extra_buffers=False)
        )
        conversation, answers, sizes = Conversation(), [], []
        try:
            for text, temperature, limit in turns:
                options = SamplingOptions(
                    temperature=temperature, seed=3, max_tokens=limit, ignore_eos=True
                )
                before = backend.scheduler.size
                reply = Reply()
                for _ in conversation.send(text, backend, options, Cancellation(), reply):
                    pass
                prompt = backend.count_tokens(conversation.messages[:-1])
                answers.append(reply.text)
                sizes.append((before, prompt, backend.scheduler.size))
        finally:
            backend.close()
        return answers, sizes

    monkeypatch.setattr(llama, "INITIAL_CONTEXT", 512)
    grown, sizes = converse()
    (start, first_prompt, after_first), (_, second_prompt, size) = sizes
    assert start == 512 and first_prompt < 512 < after_first  # grew during the answer
    assert after_first < second_prompt < size  # grew during the prompt
    monkeypatch.setattr(llama, "INITIAL_CONTEXT", size)
    full, full_sizes = converse()
    assert [s[2] for s in full_sizes] == [size, size]  # never grew
    assert grown == full

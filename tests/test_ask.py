"""`gptcli ask` end to end: the installed script, the bundled model, real pipes."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import Gptcli, gptcli_executable
from tests.timing import maps_file, patience, wait_until

pytestmark = pytest.mark.slow

FACTS = [
    ("Name the capital city of France.", "paris"),
    ("Who wrote Romeo and Juliet?", "shakespeare"),
]


@pytest.mark.parametrize(("question", "expected"), FACTS)
def test_answers_factual_questions(gptcli: Gptcli, question: str, expected: str) -> None:
    result = gptcli("ask", "-t", "0", "-n", "40", question)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.lower()
    assert result.stderr == ""


def test_same_seed_gives_same_text(gptcli: Gptcli) -> None:
    args = ("ask", "--seed", "1234", "-t", "0.9", "-n", "40", "Tell me about cats.")
    first, second = gptcli(*args), gptcli(*args)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert len(first.stdout.split()) > 5
    other = gptcli("ask", "--seed", "99", "-t", "0.9", "-n", "40", "Tell me about cats.")
    assert other.stdout != first.stdout  # the seed really reaches the sampler


def test_json_output_is_consistent(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--json", "-t", "0", "--seed", "7", "-n", "12", "Tell me a story.")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"text", "model", "usage", "timings", "finish_reason", "seed"}
    assert data["seed"] == 7
    assert data["finish_reason"] == "length"
    usage = data["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["prompt_tokens"] > 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert data["timings"]["time_to_first_token_s"] > 0
    assert data["timings"]["tokens_per_s"] > 0
    assert data["text"].strip()
    stopped = json.loads(gptcli("ask", "--json", "-t", "0", FACTS[0][0]).stdout)
    assert stopped["finish_reason"] == "stop"
    assert "paris" in stopped["text"].lower()


def test_stdin_only(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-t", "0", "-n", "40", input=FACTS[1][0])
    assert result.returncode == 0, result.stderr
    assert "shakespeare" in result.stdout.lower()
    dash = gptcli("ask", "-", "-t", "0", "-n", "40", input=FACTS[1][0])
    assert dash.stdout == result.stdout


def test_stdin_with_prompt_uses_both(gptcli: Gptcli) -> None:
    result = gptcli(
        "ask",
        "-t",
        "0",
        "-n",
        "30",
        "What is the secret word?",
        input="The secret word is banana.\n",
    )
    assert result.returncode == 0, result.stderr
    assert "banana" in result.stdout.lower()


def test_no_subcommand_with_piped_input_acts_like_ask(gptcli: Gptcli) -> None:
    result = gptcli(input=FACTS[0][0])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stderr == ""


def test_piped_output_has_no_escape_codes(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-t", "0", "-n", "60", "Write a markdown list of three fruits.")
    assert result.returncode == 0
    assert b"\x1b" not in result.stdout_bytes
    assert result.stdout.endswith("\n")


def test_reader_going_away_leaves_no_traceback(gptcli: Gptcli) -> None:
    pipeline = subprocess.run(
        f"'{gptcli_executable()}' ask -n 300 'Write a long story about a dragon.' | head -c 5",
        shell=True,
        capture_output=True,
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert len(pipeline.stdout) == 5
    assert pipeline.stderr == b""


def test_full_disk_behind_stdout(gptcli: Gptcli) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [gptcli_executable(), "ask", "-n", "20", "Hello"],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=gptcli.env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert stderr.count("\n") == 1
    assert "No space left on device" in stderr
    assert "Traceback" not in stderr


def test_invalid_utf8_stdin_is_replaced_with_a_warning(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-t", "0", "-n", "5", "Repeat this.", input=b"caf\xe9 \xff ok")
    assert result.returncode == 0
    assert "not valid UTF-8" in result.stderr
    assert "offset 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_binary_stdin_is_refused(gptcli: Gptcli) -> None:
    result = gptcli("ask", "Summarise", input=b"\x7fELF\x00\x01\x02")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("gptcli: error: stdin contains a NUL byte")


def test_empty_stdin_without_prompt_is_a_usage_error(gptcli: Gptcli) -> None:
    result = gptcli("ask", input=b"")
    assert result.returncode == 2
    assert "stdin was empty" in result.stderr


def test_closed_stdin_with_prompt_still_answers(gptcli: Gptcli) -> None:
    result = gptcli("ask", "-t", "0", "-n", "40", FACTS[0][0], input=None)
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()


def test_stop_string_ends_the_answer(gptcli: Gptcli) -> None:
    full = gptcli("ask", "-t", "0", "-n", "40", FACTS[0][0]).stdout
    assert "Paris" in full
    cut = gptcli("ask", "-t", "0", "-n", "40", "--stop", "Paris", "--json", FACTS[0][0])
    data = json.loads(cut.stdout)
    assert data["finish_reason"] == "stop"
    assert data["text"] == full[: full.index("Paris")]
    assert "Paris" not in data["text"]


def test_system_prompt_changes_the_answer(gptcli: Gptcli) -> None:
    base = gptcli("ask", "-t", "0", "-n", "30", "Who are you?")
    pirate = gptcli(
        "ask", "-t", "0", "-n", "30", "-s", "You are a pirate named Blackbeard.", "Who are you?"
    )
    assert base.returncode == pirate.returncode == 0
    assert base.stdout != pirate.stdout


def test_context_overflow_generates_nothing(gptcli: Gptcli) -> None:
    long_text = "The quick brown fox jumps over the lazy dog. " * 200
    result = gptcli("ask", "--ctx", "256", "Summarise this.", input=long_text)
    assert result.returncode == 4
    assert result.stdout == ""
    refusal = "the input is 2,040 tokens but only 224 fit the 256-token context window"
    assert refusal in result.stderr


def test_version_and_module_entry_point(gptcli: Gptcli) -> None:
    import sys

    version = gptcli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("gptcli ")
    module = subprocess.run(
        [sys.executable, "-m", "gptcli", "--version"], capture_output=True, text=True, check=False
    )
    assert module.stdout == version.stdout


def test_help_documents_exit_statuses(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    for fragment in ("130 interrupted", "4 input does not fit", "3 model not found"):
        assert fragment in flat


def test_bad_option_is_a_usage_error(gptcli: Gptcli) -> None:
    result = gptcli("ask", "--temperature", "hot", "hi")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    negative = gptcli("ask", "--top-p", "3", "hi")
    assert negative.returncode == 2
    assert "--top-p" in negative.stderr


def _interrupt_after(gptcli: Gptcli, seconds: float, *args: str, stdin: bytes) -> tuple[int, float]:
    import signal
    import time

    source = gptcli.home / "stdin.txt"
    source.write_bytes(stdin)
    with source.open("rb") as handle:
        child = subprocess.Popen(
            [gptcli_executable(), "ask", *args],
            stdin=handle,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=gptcli.env,
        )
    # The model is mapped: loading is under way; prefill of the long prompt follows.
    wait_until(lambda: maps_file(child.pid, ".gguf"), 60, "the model to be loaded")
    time.sleep(patience(seconds))
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=patience(30))
    assert b"Traceback" not in stderr
    return child.returncode, time.monotonic() - sent


def test_ctrl_c_during_prompt_processing_returns_promptly(gptcli: Gptcli) -> None:
    document = ("The quick brown fox jumps over the lazy dog. " * 330).encode()
    # About 3,300 prompt tokens: several seconds of prefill on a small CPU.
    status, took = _interrupt_after(gptcli, 0.7, "--ctx", "8192", "Summarise.", stdin=document)
    assert status == 130
    assert took < patience(2.0)


def test_ctrl_c_during_generation_keeps_the_partial_answer(gptcli: Gptcli) -> None:
    import signal
    import time

    child = subprocess.Popen(
        [gptcli_executable(), "ask", "-n", "2000", "Write a very long story about a dragon."],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=gptcli.env,
    )
    assert child.stdout is not None
    first = child.stdout.read(40)  # it is answering
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    rest, stderr = child.communicate(timeout=patience(30))
    assert child.returncode == 130
    assert len(first + rest) > 40
    assert b"Traceback" not in stderr


def test_every_sampling_option_reaches_the_sampler(gptcli: Gptcli) -> None:
    base = ("ask", "--seed", "11", "-n", "40", "Write about the sea.")
    reference = gptcli(*base, "-t", "0.9")
    assert reference.returncode == 0, reference.stderr
    variants = [
        ("--repeat-penalty", "1.5"),
        ("--top-k", "1"),
        ("--top-p", "0.05"),
        ("--min-p", "0.5"),
    ]
    for flag, value in variants:
        changed = gptcli(*base, "-t", "0.9", flag, value)
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout != reference.stdout, flag


@pytest.mark.parametrize("setting", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {}])
def test_terminal_output_plain_when_asked(gptcli: Gptcli, setting: dict[str, str]) -> None:
    from tests.terminal import Terminal

    env = {**gptcli.env, "TERM": "xterm-256color", **setting}
    prompt = "Write a markdown list of three fruits with **bold** names."
    term = Terminal([gptcli_executable(), "ask", "-t", "0", "-n", "60", prompt], env)
    try:
        assert term.wait_exit(timeout=60) == 0
    finally:
        term.close()
    if setting:
        assert b"\x1b" not in term.raw  # exact text, no escape sequences at all
    else:
        assert b"\x1b[" in term.raw  # rendered Markdown on a capable terminal

"""The prompt cache across runs: a second `ask` about the same text restores its cells.

Each test asks about a short file (just over the cache's 256-token minimum) with -n 4;
what the cache changes is only where the cells come from, so the text must equal a
--no-cache run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Gptcli, gptcli_executable
from tests.terminal import Terminal

WORDS = [
    "river",
    "city",
    "market",
    "garden",
    "winter",
    "light",
    "stone",
    "bridge",
    "harbour",
    "clock",
    "tower",
    "evening",
]


def document(path: Path, seed: int = 0) -> Path:
    words = [WORDS[(i * 7 + seed) % len(WORDS)] for i in range(290)]
    path.write_text(f"Notes {seed}: " + " ".join(words) + ".\n")
    return path


def ask(gptcli: Gptcli, doc: Path, question: str, *extra: str) -> dict[str, object]:
    result = gptcli("ask", "--json", "-t", "0", "-n", "4", "-f", str(doc), *extra, question)
    assert result.returncode == 0, result.stderr
    record: dict[str, object] = json.loads(result.stdout)
    record["stderr"] = result.stderr
    return record


def cached(record: dict[str, object]) -> int:
    timings = record["timings"]
    assert isinstance(timings, dict)
    return int(timings["cached_prompt_tokens"])


def entries(gptcli: Gptcli) -> list[Path]:
    return sorted((gptcli.home / "cache" / "prompts").glob("*.kv"))


def test_a_second_ask_reuses_the_text_and_answers_the_same(gptcli: Gptcli, tmp_path: Path) -> None:
    doc = document(tmp_path / "notes.txt")
    first = ask(gptcli, doc, "What is this about?")
    assert cached(first) == 0
    assert len(entries(gptcli)) == 1
    second = ask(gptcli, doc, "Which words repeat?")
    usage = second["usage"]
    assert isinstance(usage, dict)
    assert cached(second) >= 256
    assert usage["prompt_tokens"] - cached(second) < 20  # the question and the template's tail
    fresh = ask(gptcli, doc, "Which words repeat?", "--no-cache")
    assert cached(fresh) == 0
    assert second["text"] == fresh["text"]
    # Another KV cache type is another key: nothing of f16's is loaded into q8_0.
    assert cached(ask(gptcli, doc, "Which words repeat?", "--kv-type", "q8_0")) == 0
    assert len(entries(gptcli)) == 2


def damaged(entry: Path, damage: str) -> None:
    data = bytearray(entry.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF  # in the state: only its checksum can tell
    elif damage == "truncated":
        del data[len(data) - 1000 :]
    else:
        data[:] = b"not an entry\n" * 10
    entry.write_bytes(bytes(data))


def test_a_corrupt_entry_is_dropped_and_the_answer_is_right(gptcli: Gptcli, tmp_path: Path) -> None:
    doc = document(tmp_path / "notes.txt")
    ask(gptcli, doc, "What is this about?")
    right = ask(gptcli, doc, "Which words repeat?", "--no-cache")["text"]
    for damage in ("flipped", "truncated", "garbage"):
        # Each round damages the entry the round before wrote in place of a dropped one.
        [entry] = entries(gptcli)
        damaged(entry, damage)
        answer = ask(gptcli, doc, "Which words repeat?")
        assert cached(answer) == 0, damage
        assert answer["text"] == right, damage
    # Dropped and written again: the next run reuses the new entry.
    assert cached(ask(gptcli, doc, "Name one word.")) >= 256


@pytest.mark.parametrize("how", ["not-a-directory", "read-only"])
def test_a_cache_that_cannot_be_written_is_one_note(
    gptcli: Gptcli, tmp_path: Path, how: str
) -> None:
    prompts = gptcli.home / "cache" / "prompts"
    if how == "not-a-directory":
        prompts.parent.mkdir(parents=True, exist_ok=True)
        prompts.write_text("")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes whatever the mode")
        prompts.mkdir(parents=True)
        prompts.chmod(0o500)
    doc = document(tmp_path / "notes.txt")
    answer = ask(gptcli, doc, "Which words repeat?")
    notes = [line for line in str(answer["stderr"]).splitlines() if "prompt cache" in line]
    assert len(notes) == 1, answer["stderr"]
    assert answer["text"] == ask(gptcli, doc, "Which words repeat?", "--no-cache")["text"]


def test_two_processes_writing_one_entry_both_finish(gptcli: Gptcli, tmp_path: Path) -> None:
    doc = document(tmp_path / "notes.txt")
    command = [gptcli_executable(), "ask", "--json", "-t", "0", "-n", "4", "-f", str(doc), "Hi"]
    runs = [
        subprocess.Popen(command, env=gptcli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    texts = {json.loads(out)["text"] for out, _ in outputs}
    assert len(texts) == 1
    assert len(entries(gptcli)) == 1
    assert not list((gptcli.home / "cache" / "prompts").glob(".*.tmp"))
    assert cached(ask(gptcli, doc, "Name one word.")) >= 256


def test_cache_list_and_clear(gptcli: Gptcli, tmp_path: Path) -> None:
    doc = document(tmp_path / "notes.txt")
    ask(gptcli, doc, "What is this about?")
    listed = gptcli("cache", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert entry["tokens"] > 256 and entry["bytes"] == entries(gptcli)[0].stat().st_size
    assert entry["kv_type"] == "f16"
    # The same prompt in another KV type is an entry of its own, and the table tells them
    # apart: a short id each, and the type.
    ask(gptcli, doc, "What is this about?", "--kv-type", "q8_0")
    table = gptcli("cache", "list")
    assert "SmolLM2-135M-Instruct.Q4_1" in table.stdout and "2 entries" in table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert sorted(row[2] for row in rows) == ["f16", "q8_0"]
    assert len({row[0] for row in rows}) == 2
    cleared = gptcli("cache", "clear")
    assert cleared.returncode == 0 and "removed 2 entries (" in cleared.stderr
    assert entries(gptcli) == []
    assert json.loads(gptcli("cache", "list", "--json").stdout) == []


def test_the_cache_keeps_the_most_recent_entries_within_its_size(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    # An entry of ~300 tokens is ~7 MiB in f16: room for one, not two.
    (gptcli.home / "config").mkdir()
    (gptcli.home / "config" / "config.toml").write_text('prompt_cache_size = "10 MiB"\n')
    first, second = document(tmp_path / "a.txt", 1), document(tmp_path / "b.txt", 2)
    ask(gptcli, first, "What is this about?")
    ask(gptcli, second, "What is this about?")
    kept = entries(gptcli)
    assert len(kept) == 1 and sum(p.stat().st_size for p in kept) <= 10 * 2**20
    assert cached(ask(gptcli, second, "Name one word.")) >= 256
    assert cached(ask(gptcli, first, "Name one word.")) == 0


def test_prompt_cache_off_in_the_config_file(gptcli: Gptcli, tmp_path: Path) -> None:
    (gptcli.home / "config").mkdir()
    (gptcli.home / "config" / "config.toml").write_text("prompt_cache = false\n")
    doc = document(tmp_path / "notes.txt")
    ask(gptcli, doc, "What is this about?")
    assert cached(ask(gptcli, doc, "Name one word.")) == 0
    assert entries(gptcli) == []


def test_a_batch_restores_the_shared_prefix_and_answers_the_same(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    # Three items for two slots: the slot of the first takes the third, so what is left to
    # write is the prefix they share (the text and the template around it), not one prompt.
    doc = document(tmp_path / "notes.txt")
    questions = ["What is this about?", "Which words repeat?", "Name one word."]
    items = tmp_path / "in.jsonl"
    items.write_text(
        "".join(
            json.dumps({"id": n, "prompt": q, "attachments": [str(doc)]}) + "\n"
            for n, q in enumerate(questions)
        )
    )

    def batch(*extra: str) -> list[dict[str, object]]:
        command = ("batch", "--ordered", "-t", "0", "-n", "4", "--parallel", "2", *extra)
        done = gptcli(*command, str(items))
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    first = batch()
    assert cached(first[0]) == 0  # the others copy it from the first item's slot
    [entry] = entries(gptcli)
    fresh = batch("--no-cache")
    assert cached(fresh[0]) == 0 and entries(gptcli) == [entry]
    second = batch()
    usage = second[0]["usage"]
    assert isinstance(usage, dict)
    assert cached(second[0]) >= 256
    assert usage["prompt_tokens"] - cached(second[0]) < 20  # the question and the template's tail
    assert [r["text"] for r in second] == [r["text"] for r in fresh] == [r["text"] for r in first]
    assert entries(gptcli) == [entry]  # nothing new to write


def test_a_chat_killed_after_its_first_answer_has_written_its_entry(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    doc = document(tmp_path / "notes.txt")
    env = {**gptcli.env, "TERM": "xterm-256color"}
    chat = [gptcli_executable(), "-t", "0", "-n", "4", "-a", str(doc)]
    term = Terminal(chat, env)
    try:
        term.wait_prompt(1)
        term.type_line("What is this about?")
        term.wait_prompt(2)  # the answer is out: its entry is written before the next prompt
        term.child.kill(signal.SIGKILL)  # no exit, no handler: only what is on disk stays
        term.child.wait()
        assert term.child.signalstatus == signal.SIGKILL
    finally:
        term.close()
    assert len(entries(gptcli)) == 1
    answer = ask(gptcli, doc, "Which words repeat?")
    assert cached(answer) >= 256
    assert answer["text"] == ask(gptcli, doc, "Which words repeat?", "--no-cache")["text"]

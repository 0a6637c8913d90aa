"""The REPL in a real pseudo-terminal, driven like a user: keys in, screen out."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gptcli, gptcli_executable
from tests.terminal import Terminal

pytestmark = pytest.mark.slow

FRANCE = "Name the capital city of France."


@pytest.fixture
def repl(gptcli: Gptcli) -> Iterator[Terminal]:
    terminal = start(gptcli)
    yield terminal
    terminal.close()


def start(gptcli: Gptcli, *args: str, rows: int = 30, cols: int = 100) -> Terminal:
    env = {**gptcli.env, "TERM": "xterm-256color", "EDITOR": "true"}
    terminal = Terminal([gptcli_executable(), *args], env, rows=rows, cols=cols)
    terminal.wait_prompt(1)
    return terminal


def answer_after(screen_lines: list[str], prompt: str) -> str:
    """The text between the prompt line containing ``prompt`` and the next prompt."""
    starts = [i for i, line in enumerate(screen_lines) if line.startswith(">>>") and prompt in line]
    assert starts, f"prompt {prompt!r} not found in:\n" + "\n".join(screen_lines)
    rest = screen_lines[starts[-1] + 1 :]
    end = next((i for i, line in enumerate(rest) if line.startswith(">>>")), len(rest))
    return "\n".join(rest[:end])


def test_second_answer_depends_on_the_first(gptcli: Gptcli) -> None:
    term = start(gptcli, "-t", "0", "-n", "60")
    try:
        term.type_line(FRANCE)
        term.wait_prompt(2)
        follow_up = "What is the population of that city?"
        term.type_line(follow_up)
        term.wait_prompt(3)
        second = answer_after(term.scrollback(), follow_up)
        assert "Paris" in second
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_ctrl_c_stops_the_answer_and_the_next_turn_works(gptcli: Gptcli) -> None:
    term = start(gptcli, "-t", "0")
    try:
        term.type_line("Write a very long essay about the history of the Roman Empire.")
        term.wait_for(lambda screen: len(screen.split()) > 40)  # it is answering
        term.ctrl("c")
        term.wait_text("(interrupted)", timeout=10)
        term.wait_prompt(2, timeout=10)
        term.type_line("/stats")
        term.wait_text("finished: interrupted")
        term.type_line(FRANCE)
        term.wait_prompt(4)
        assert "Paris" in answer_after(term.scrollback(), FRANCE)
    finally:
        term.close()


def test_slash_commands(gptcli: Gptcli, bundled_model: Path) -> None:
    term = start(gptcli)
    try:
        term.type_line("/help")
        term.wait_text("/retry")
        term.type_line("/set temperature 0")
        term.wait_text("(temperature = 0.0)")
        term.type_line("/set temperature hot")
        term.wait_text("temperature must be a number")
        term.type_line("/sytem")
        term.wait_text("unknown command /sytem. Did you mean /system?")
        term.type_line(FRANCE)
        term.wait_prompt(6)
        first = answer_after(term.scrollback(), FRANCE)
        assert "Paris" in first
        term.type_line("/retry")
        term.wait_prompt(7)
        assert answer_after(term.scrollback(), "/retry") == first  # temperature 0
        term.type_line("/undo")
        term.wait_text("(dropped the last exchange)")
        term.type_line("/stats")
        term.wait_prompt(9)
        term.type_line(f"/model {bundled_model}")
        term.wait_text("(now using SmolLM2-135M-Instruct.Q4_1")
        term.type_line("/model /no/such/model.gguf")
        term.wait_text("model not changed: model file not found")
        term.type_line("/show")
        term.wait_text("quantisation")
        assert "Q4_1" in term.screen_text()
        term.type_line("/quit")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_history_survives_restart_and_is_private(gptcli: Gptcli) -> None:
    term = start(gptcli, "-n", "5")
    term.type_line("remember this line")
    term.wait_prompt(2)
    term.ctrl("d")
    assert term.wait_exit() == 0
    history = gptcli.home / "data" / "history"
    assert history.stat().st_mode & 0o777 == 0o600
    assert history.parent.stat().st_mode & 0o777 == 0o700
    again = start(gptcli)
    try:
        again.send("\x1b[A")  # Up
        again.wait_for(lambda _: "remember this line" in again.screen_text())
    finally:
        again.close()


def test_no_history_option_writes_nothing(gptcli: Gptcli) -> None:
    term = start(gptcli, "--no-history", "-n", "5")
    term.type_line("secret line")
    term.wait_prompt(2)
    term.ctrl("d")
    assert term.wait_exit() == 0
    history = gptcli.home / "data" / "history"
    assert not history.exists() or "secret" not in history.read_text()


def test_multiline_entry_with_triple_quotes(gptcli: Gptcli) -> None:
    term = start(gptcli, "-n", "5")
    try:
        term.type_line('"""')
        term.type_line("first line")
        term.send("second line")
        term.send("\x1b\r")  # Esc Enter adds a line too
        term.type_line('"""')
        term.wait_prompt(2)
        text = (gptcli.home / "data" / "history").read_text()
        assert '+"""\n+first line\n+second line\n+"""' in text
    finally:
        term.close()


def test_ctrl_c_twice_on_empty_line_exits_zero(repl: Terminal) -> None:
    repl.ctrl("c")
    repl.wait_text("Ctrl-C again or Ctrl-D to exit")
    repl.ctrl("c")
    assert repl.wait_exit() == 0


def test_tall_reply_leaves_no_duplicated_lines(gptcli: Gptcli) -> None:
    prompt = "Write a long story about a brave knight and a dragon."
    args = ("-t", "0", "--seed", "3", "-n", "250")
    expected = gptcli("ask", "--plain", *args, prompt).stdout
    term = start(gptcli, *args, rows=12, cols=80)
    try:
        term.type_line(prompt)
        term.wait_prompt(2, timeout=90)
        shown = answer_after(term.scrollback(), prompt)
    finally:
        term.close()
    assert "(answer cut at 250 tokens)" in shown
    shown = shown.replace("(answer cut at 250 tokens)", "")

    def words(text: str) -> list[str]:
        return re.findall(r"[A-Za-z0-9']+", text)

    assert len(words(expected)) > 100
    assert words(shown) == words(expected)


def test_piped_stdin_without_command_does_not_start_the_repl(gptcli: Gptcli) -> None:
    result = gptcli("-t", "0", "-n", "30", input=FRANCE)
    assert result.returncode == 0
    assert "Paris" in result.stdout
    assert ">>>" not in result.stdout


def test_chat_refuses_a_pipe(gptcli: Gptcli) -> None:
    result = gptcli("chat", input="hello")
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr


def test_every_command_survives_no_argument_too_many_and_garbage(gptcli: Gptcli) -> None:
    """Each command /help lists, given no argument, too many and garbage, answers with a
    line (a usage note, an error, or its work) and the chat goes on to answer a question."""
    from gptcli.terminal.repl.commands import COMMANDS

    term = start(gptcli, "-t", "0", "-n", "40", cols=100)
    try:
        term.type_line("/help")
        term.wait_prompt(2)
        help_lines = term.scrollback()
        long_line = next(i for i, line in enumerate(help_lines) if line.startswith("  /set NAME"))
        description_column = help_lines[long_line].index("set temperature")
        continued = help_lines[long_line + 1]
        assert continued[:description_column].strip() == ""  # wrapped under its column
        assert continued[description_column : description_column + 1].strip()
        shown = 2
        for command in COMMANDS:
            variants = ["a b c", "%%garbage%%"]
            if command.name not in ("exit", "quit", "clear"):
                variants.insert(0, "")
            for arg in variants:
                term.type_line(f"/{command.name} {arg}".rstrip())
                shown += 1
                term.wait_prompt(shown, timeout=30)
        assert "internal error" not in "\n".join(term.scrollback())
        term.type_line("/system -")
        term.wait_prompt(shown + 1)
        term.type_line(FRANCE)
        term.wait_prompt(shown + 2)
        assert "Paris" in answer_after(term.scrollback(), FRANCE)
        term.type_line("/quit")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_role_switches_the_tools_too(gptcli: Gptcli) -> None:
    """/role NAME sets the role's tools beside the config's and -T's; another role drops them."""
    roles = gptcli.home / "config" / "roles"
    roles.mkdir(parents=True)
    (roles / "counter.toml").write_text('system = "You count."\ntools = ["calc"]\n')
    (roles / "plain.toml").write_text('system = "You talk."\n')
    term = start(gptcli, "-T", "time")
    try:
        term.type_line("/role counter")
        term.wait_text("(role counter: system prompt and options set, tools calc)")
        term.type_line("/tools")
        term.wait_prompt(3)
        listed = "\n".join(term.scrollback())
        listed = listed[listed.rindex(">>> /tools") :]
        assert "calc" in listed and "time" in listed
        term.type_line("/role plain")
        term.wait_prompt(4)
        term.type_line("/tools")
        term.wait_prompt(5)
        after = "\n".join(term.scrollback())
        after = after[after.rindex(">>> /tools") :]
        assert "time" in after and "calc" not in after
    finally:
        term.close()


def test_show_gives_values_as_a_person_types_them(gptcli: Gptcli) -> None:
    term = start(gptcli)
    try:
        term.type_line("/set speculate ngram")  # a word, where /set once took only numbers
        term.wait_text("(speculate = ngram)")
        term.type_line("/show")
        term.wait_prompt(3)
        shown = "\n".join(term.scrollback())
        shown = shown[shown.rindex(">>> /show") :]
        for line in ("seed            random", "stop            none", "think           auto"):
            assert line in shown, shown
        assert "speculate       ngram" in shown
        # The bundled model's cells: 22.5 KiB of f16 K and V a token, 4,096 of them.
        assert "kv cache        f16, 22.5 KiB per token (90.0 MiB full)" in shown
        assert "None" not in shown and "'auto'" not in shown and "()" not in shown
        assert shown.count("schema") == 1
    finally:
        term.close()


def test_keys_typed_while_an_answer_streams_are_not_echoed(gptcli: Gptcli) -> None:
    """A Ctrl-C echoed as ^C into the live region moved the cursor under Rich's redraw and
    left the unfinished paragraph on screen twice: nothing is echoed while it streams."""
    prompt = "Write a very long essay about the history of the Roman Empire."
    term = start(gptcli, "-t", "0", "--ignore-eos", "-n", "2000")
    try:
        term.type_line(prompt)
        term.wait_for(lambda screen: len(screen.split()) > 40)  # it is answering
        before = len(term.raw)
        term.send("xyz")
        term.ctrl("c")
        term.wait_text("(interrupted)", timeout=10)
        term.wait_prompt(2, timeout=10)
        after = term.raw[before:]
        assert b"^C" not in after and b"xyz" not in after
        shown = answer_after(term.scrollback(), prompt).replace("(interrupted)", "")
    finally:
        term.close()
    # What the screen keeps is the saved answer, each word once: no paragraph shown twice.
    (saved_file,) = (gptcli.home / "data" / "sessions").glob("*.json")
    saved = json.loads(saved_file.read_text())["messages"][-1]
    assert saved["finish_reason"] == "interrupted"

    def words(text: str) -> list[str]:
        return re.findall(r"[A-Za-z0-9']+", text)

    assert len(words(saved["content"])) > 30
    assert words(shown) == words(saved["content"])

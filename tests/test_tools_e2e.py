"""Tools end to end: the installed script, the bundled model, real tools, a real MCP server.

The bundled model's template knows no tools, so it gets the generic format, and
``--tool-choice NAME`` makes the grammar force a well-formed call: what the tiny
model writes inside the arguments is not asserted, only that the call is valid,
runs (or is refused) as the rules say, and is reported in every output form.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Gptcli, gptcli_executable
from tests.mcphttp import HEADER, closed_port, http_server
from tests.terminal import Terminal
from tests.timing import patience

pytestmark = pytest.mark.slow

NOTES = '''
from pathlib import Path
from typing import Literal

Day = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def add_note(day: Day) -> str:
    """Note down the day of the meeting in the notes file.

    Args:
        day: the day of the meeting
    """
    with Path("notes.txt").open("a", encoding="utf-8") as handle:
        handle.write(f"meeting on {day}\\n")
    return "noted"
'''
QUESTION = "Please remember that the meeting is on Tuesday."


def notes_file(directory: Path) -> Path:
    path = directory / "notes_tool.py"
    path.write_text(NOTES, encoding="utf-8")
    return path


def forced(gptcli: Gptcli, cwd: Path, *args: str, prompt: str = QUESTION) -> dict[str, object]:
    done = gptcli("ask", "-t", "0", "-n", "64", "--json", *args, prompt, cwd=cwd, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_a_forced_calc_call_runs_and_the_model_answers_after_it(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    result = forced(
        gptcli, tmp_path, "-T", "calc", "--tool-choice", "calc", prompt="What is 17 * 23?"
    )
    calls = result["tool_calls"]
    assert isinstance(calls, list) and len(calls) == 1
    call = calls[0]
    assert call["name"] == "calc"
    assert isinstance(call["arguments"], dict) and isinstance(call["arguments"]["expression"], str)
    assert call["result"]["text"]  # the value, or calc's one-line reason
    assert result["tool_rounds"] == 1
    assert result["finish_reason"] in ("stop", "length")


def test_a_tool_that_writes_is_refused_without_a_terminal_and_runs_when_approved(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    functions = str(notes_file(tmp_path))
    args = ("--functions", functions, "--tool-choice", "add_note")
    shell = forced(gptcli, tmp_path, "-T", "shell", "--tool-choice", "shell")
    record = shell["tool_calls"][0]  # type: ignore[index]
    assert record["name"] == "shell" and record["result"]["refused"] is True
    assert "--approve shell" in record["result"]["text"]

    refused = forced(gptcli, tmp_path, *args)
    record = refused["tool_calls"][0]  # type: ignore[index]
    assert record["result"]["refused"] is True
    assert "--approve add_note" in record["result"]["text"]
    assert not (tmp_path / "notes.txt").exists()

    approved = forced(gptcli, tmp_path, *args, "--approve", "add_note")
    assert approved["tool_calls"][0]["result"]["text"] == "noted"  # type: ignore[index]
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8").strip()


def test_jsonl_events_and_a_clean_pipe(gptcli: Gptcli, tmp_path: Path) -> None:
    done = gptcli(
        "ask", "-t", "0", "-n", "64", "--jsonl", "-T", "time", "--tool-choice", "required",
        "What day is it today?", cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["usage", "end"]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    call = events[kinds.index("tool_call")]
    assert call["name"] == "time" and call["id"]
    result = events[kinds.index("tool_result")]
    assert result["id"] == call["id"] and result["text"]  # the time, or why not

    piped = gptcli(
        "ask", "-t", "0", "-n", "64", "-T", "time", "--tool-choice", "time", "What day is it?",
        cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    # Only the answer's text: no call lines (they would go to a terminal's stderr).
    assert "⚙" not in piped.stdout and "gptcli:" not in piped.stdout
    assert '"name": "time"' not in piped.stdout
    assert piped.stderr == ""


def test_a_session_records_the_call_and_its_result(gptcli: Gptcli, tmp_path: Path) -> None:
    forced(gptcli, tmp_path, "--session", "tooled", "-T", "calc", "--tool-choice", "calc",
           prompt="What is 2 + 2?")  # fmt: skip
    exported = gptcli("sessions", "export", "tooled", "--format", "json")
    messages = json.loads(exported.stdout)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1]["tool_calls"][0]
    assert call["name"] == "calc" and messages[2]["tool_call_id"] == call["id"]
    # The next turn continues from the saved history, calls included.
    again = gptcli("ask", "-t", "0", "-n", "8", "--session", "tooled", "-T", "calc", "Thanks.")
    assert again.returncode == 0, again.stderr


def configure_servers(gptcli: Gptcli) -> None:
    """``test``: the tests' MCP server; ``broken``: the same, exiting at once."""
    pytest.importorskip("mcp")
    server = json.dumps(str(Path(__file__).parent / "mcpserver.py"))
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    python = json.dumps(sys.executable)
    config.write_text(
        f"[mcp.servers.test]\ncommand = {python}\nargs = [{server}]\n\n"
        f'[mcp.servers.broken]\ncommand = {python}\nargs = [{server}, "--exit-at-once"]\n',
        encoding="utf-8",
    )


def test_an_mcp_server_tool_through_ask(gptcli: Gptcli, tmp_path: Path) -> None:
    configure_servers(gptcli)
    result = forced(gptcli, tmp_path, "-T", "mcp:test/echo", "--tool-choice", "echo")
    call = result["tool_calls"][0]  # type: ignore[index]
    assert call["name"] == "echo"
    assert call["result"]["text"].startswith("echo: ")

    wrong = gptcli("ask", "-T", "mcp:nosuch", "hello", cwd=tmp_path)
    assert wrong.returncode == 2 and "unknown MCP server 'nosuch'" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_an_mcp_server_over_http_through_ask(gptcli: Gptcli, tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    with http_server(require=HEADER) as (url, _):
        config.write_text(
            f'[mcp.servers.web]\nurl = "{url}"\nheaders_env = "WEB_MCP_HEADERS"\n\n'
            f'[mcp.servers.down]\nurl = "http://127.0.0.1:{closed_port()}/mcp"\n',
            encoding="utf-8",
        )
        unset = gptcli("ask", "-T", "mcp:web", "hello", cwd=tmp_path)
        assert unset.returncode == 2
        assert unset.stderr.strip().splitlines() == [
            "gptcli: error: MCP server 'web': headers_env: the environment variable "
            "WEB_MCP_HEADERS is not set"
        ]
        gptcli.env["WEB_MCP_HEADERS"] = HEADER
        result = forced(gptcli, tmp_path, "-T", "mcp:web/echo", "--tool-choice", "echo")
        call = result["tool_calls"][0]  # type: ignore[index]
        assert call["name"] == "echo"
        assert call["result"]["text"].startswith("echo: ")

    started = time.monotonic()
    down = gptcli("ask", "-T", "mcp:down", "hello", cwd=tmp_path)
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1
    assert "MCP server 'down'" in down.stderr and "cannot connect" in down.stderr
    assert time.monotonic() - started < patience(15)


def test_the_chat_asks_before_a_tool_that_writes(gptcli: Gptcli, tmp_path: Path) -> None:
    functions = str(notes_file(tmp_path))
    env = {**gptcli.env, "TERM": "xterm-256color"}
    command = [gptcli_executable(), "--functions", functions, "--tool-choice", "add_note"]
    term = Terminal([*command, "-t", "0", "-n", "64", "--no-save"], env, rows=40, cols=100,
                    cwd=tmp_path)  # fmt: skip
    try:
        term.wait_prompt(1)
        term.type_line("/tools")
        term.wait_text("asks first")
        term.type_line(QUESTION)
        term.wait_text("Allow it?")
        term.type_line("n")
        term.wait_prompt(2)
        assert not (tmp_path / "notes.txt").exists()
        term.type_line("/show tools")
        term.wait_text("the user declined")
        term.type_line("/retry")
        term.wait_for(lambda _: "\n".join(term.scrollback()).count("Allow it?") >= 2)
        term.type_line("y")
        term.wait_prompt(4)
        assert (tmp_path / "notes.txt").exists()
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_the_chat_asks_before_an_mcp_tool_and_goes_on_without_a_broken_server(
    gptcli: Gptcli, tmp_path: Path
) -> None:
    configure_servers(gptcli)
    work = tmp_path / "work"
    work.mkdir()
    env = {**gptcli.env, "TERM": "xterm-256color"}
    tools = ["-T", "mcp:test/write_note", "-T", "mcp:broken", "--tool-choice", "write_note"]
    term = Terminal([gptcli_executable(), *tools, "-t", "0", "-n", "64", "--no-save"], env,
                    rows=40, cols=100, cwd=work)  # fmt: skip
    try:
        term.wait_prompt(1)
        assert "MCP server 'broken'" in term.screen_text()  # one line, and the chat is on
        term.type_line("Write a note saying hello.")
        term.wait_text("Allow it?")  # not marked read-only by its server
        assert "mcp: test" in term.screen_text()
        term.type_line("n")
        term.wait_prompt(2)
        assert "not run" in term.screen_text()
        assert list(work.iterdir()) == []  # nothing was written
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()

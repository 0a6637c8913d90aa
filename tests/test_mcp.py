"""MCP servers end to end: a real server (tests/mcpserver.py) over stdio and streamable HTTP
through a Toolbox."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptcli.config import McpServerSettings, ToolSettings
from gptcli.engine.base import ToolCall
from gptcli.errors import UsageError
from gptcli.tools import Toolbox, ToolOutput, available_tools, mcpclient
from tests.conftest import Gptcli
from tests.mcphttp import HEADER, closed_port, http_server
from tests.timing import patience, wait_until

pytest.importorskip("mcp")

SERVER = str(Path(__file__).with_name("mcpserver.py"))


def server(name: str, *args: str, command: str = sys.executable) -> McpServerSettings:
    return McpServerSettings(
        name=name, command=command, args=(SERVER, *args) if args else (SERVER,)
    )


def settings(*servers: McpServerSettings, timeout: float = 30) -> ToolSettings:
    return ToolSettings(timeout=timeout, mcp_servers={s.name: s for s in servers})


def run(box: Toolbox, name: str, **arguments: Any) -> ToolOutput:
    return box.run(ToolCall("call-1", name, json.dumps(arguments)))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_server_tools_are_called_within_limits(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    limit = round(patience(1), 1)
    with Toolbox.enable(
        ["read_file", "mcp:demo"], [], settings(server("demo"), timeout=limit)
    ) as box:
        names = [tool.spec.name for tool in box.tools]
        # The built-in keeps its name; the server's tool of the same name is prefixed.
        assert names[:2] == ["read_file", "echo"]
        assert "demo_read_file" in names and names.count("read_file") == 1
        echo, write = box.get("echo"), box.get("write_note")
        assert echo is not None and echo.read_only and echo.source == "mcp: demo"
        assert write is not None and not write.read_only
        assert echo.spec.description == "Return the text, prefixed."
        assert run(box, "echo", text="hi\x1b[2Jthere") == ToolOutput("echo: hithere")
        assert run(box, "demo_read_file", path="x") == ToolOutput("server read x")
        assert run(box, "write_note", path=str(note), text="hello").text == "wrote 5 characters"
        assert note.read_text() == "hello"
        wrong = run(box, "echo", text=3)
        assert wrong.error and "text: 3 is not of type 'string'" in wrong.text
        started = time.monotonic()
        assert run(box, "nap", seconds=60) == ToolOutput(f"timed out after {limit:g} s", error=True)
        assert time.monotonic() - started < limit + patience(3)
        assert run(box, "echo", text="still there") == ToolOutput("echo: still there")
        pid = int(run(box, "pid").text)
        assert alive(pid)
    wait_until(lambda: not alive(pid), 10, "the server to stop at close")


def test_a_crash_mid_call_is_an_error_output_and_close_reaps_it() -> None:
    with Toolbox.enable(
        ["mcp:demo/pid", "mcp:demo/fail", "mcp:demo/crash"], [], settings(server("demo"))
    ) as box:
        assert [tool.spec.name for tool in box.tools] == ["pid", "fail", "crash"]
        pid = int(run(box, "pid").text)
        # The server's own error report, which it takes a while to write.
        failed = run(box, "fail")
        assert failed.error and "fail" in failed.text
        started = time.monotonic()
        crashed = run(box, "crash")
        assert crashed.error and "MCP server 'demo'" in crashed.text
        assert "stopped during the call" in crashed.text
        assert time.monotonic() - started < patience(5)
        after = run(box, "pid")
        assert after.error and "stopped during an earlier call" in after.text
    assert not alive(pid)
    with pytest.raises(UsageError, match="MCP server 'demo' has no tool 'nope'"):
        Toolbox.enable(["mcp:demo/nope"], [], settings(server("demo")))


def test_servers_that_cannot_start_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = McpServerSettings(name="missing", command="/no/such/mcp-server")
    with pytest.raises(UsageError, match=r"MCP server 'missing' .*command not found"):
        Toolbox.enable(["mcp:missing"], [], settings(missing))
    quitter = server("quitter", "--exit-at-once")
    with pytest.raises(UsageError) as caught:
        Toolbox.enable(["mcp:quitter"], [], settings(quitter))
    assert "it closed the connection; it said: mcpserver: refusing to start" in caught.value.message
    monkeypatch.setattr(mcpclient, "START_TIMEOUT", 1.0)
    silent = server("silent", "--silent")
    started = time.monotonic()
    with pytest.raises(UsageError, match=r"MCP server 'silent' .*no answer within 1 s"):
        Toolbox.enable(["mcp:silent"], [], settings(silent))
    assert time.monotonic() - started < patience(10)


def test_listing_shows_each_servers_tools_or_its_error(tmp_path: Path) -> None:
    broken = server("broken", "--exit-at-once")
    infos = available_tools([], settings(server("demo"), broken))
    by_name = {info.name: info for info in infos}
    assert [info.name for info in infos][:5] == ["time", "calc", "read_file", "list_dir", "shell"]
    echo = by_name["mcp:demo/echo"]
    assert echo.source == "mcp: demo" and echo.read_only and echo.error is None
    assert echo.parameters["required"] == ["text"]
    assert not by_name["mcp:demo/write_note"].read_only
    assert by_name["mcp:demo/read_file"].source == "mcp: demo"
    failed = by_name["mcp:broken"]
    assert failed.error is not None and "refusing to start" in failed.error


def test_without_the_sdk_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(UsageError, match=r"pip install 'gptcli\[mcp\]'"):
        Toolbox.enable(["mcp:demo"], [], settings(server("demo")))
    assert os.environ.get("GPTCLI_HOME")  # the autouse fixture still applies


def test_tools_commands_list_and_show(fresh_gptcli: Gptcli, tmp_path: Path) -> None:
    config = fresh_gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"[mcp.servers.demo]\ncommand = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(SERVER)}]\n"
        f"[mcp.servers.broken]\ncommand = {json.dumps(sys.executable)}\n"
        f'args = [{json.dumps(SERVER)}, "--exit-at-once"]\n'
    )
    functions = tmp_path / "funcs.py"
    functions.write_text(
        "READ_ONLY = ['double']\n\ndef double(n: int) -> int:\n    '''Twice n.'''\n"
    )
    listed = fresh_gptcli("tools", "list", "--json", "--functions", str(functions))
    assert listed.returncode == 0, listed.stderr
    records = {record["name"]: record for record in json.loads(listed.stdout)}
    assert records["shell"]["read_only"] is False and records["calc"]["read_only"] is True
    assert records["double"]["source"] == f"functions: {functions}"
    assert records["double"]["read_only"] is True
    assert records["mcp:demo/echo"]["source"] == "mcp: demo"
    assert "refusing to start" in records["mcp:broken"]["error"]
    shown = fresh_gptcli("tools", "show", "mcp:demo/write_note")
    assert shown.returncode == 0, shown.stderr
    assert "approval: needs approval" in shown.stdout
    schema = json.loads(shown.stdout.split("parameters:\n", 1)[1])
    assert schema["required"] == ["path", "text"]
    missing = fresh_gptcli("tools", "show", "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("gptcli: error: no tool 'nope'")


@pytest.fixture(scope="module")
def guarded_url() -> Iterator[str]:
    """The URL of the test server over HTTP, which answers 401 without ``HEADER``."""
    with http_server(require=HEADER) as (url, _):
        yield url


def web(url: str, headers_env: str | None = "WEB_MCP_HEADERS") -> McpServerSettings:
    return McpServerSettings(name="web", url=url, headers_env=headers_env)


def test_a_server_over_http_gets_the_headers_from_the_environment(
    guarded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_MCP_HEADERS", f"{HEADER}\nX-Trace: on\n")
    limit = round(patience(1), 1)
    with Toolbox.enable(
        ["read_file", "mcp:web"], [], settings(web(guarded_url), timeout=limit)
    ) as box:
        names = [tool.spec.name for tool in box.tools]
        assert names[:2] == ["read_file", "echo"] and "web_read_file" in names
        echo = box.get("echo")
        assert echo is not None and echo.read_only and echo.source == "mcp: web"
        assert run(box, "echo", text="over http") == ToolOutput("echo: over http")
        failed = run(box, "fail")
        assert failed.error and "fail" in failed.text
        started = time.monotonic()
        assert run(box, "nap", seconds=60) == ToolOutput(f"timed out after {limit:g} s", error=True)
        assert time.monotonic() - started < limit + patience(3)
        assert run(box, "echo", text="still there") == ToolOutput("echo: still there")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "headers_env: the environment variable WEB_MCP_HEADERS is not set"),
        (
            "Authorization: Bearer wrong",
            "answered HTTP 401 Unauthorized: check the headers in $WEB_MCP_HEADERS",
        ),
        ("s3cret-for-tests", "line 1 of $WEB_MCP_HEADERS is not a header (value not shown)"),
        ("\n \n", "$WEB_MCP_HEADERS is empty: it holds headers, one 'Name: value' a line"),
    ],
)
def test_headers_that_are_missing_or_wrong_are_one_line(
    guarded_url: str, monkeypatch: pytest.MonkeyPatch, value: str | None, fragment: str
) -> None:
    if value is None:
        monkeypatch.delenv("WEB_MCP_HEADERS", raising=False)
    else:
        monkeypatch.setenv("WEB_MCP_HEADERS", value)
    with pytest.raises(UsageError) as caught:
        Toolbox.enable(["mcp:web"], [], settings(web(guarded_url)))
    assert caught.value.message.startswith("MCP server 'web'")
    assert fragment in caught.value.message and "\n" not in caught.value.message
    assert "s3cret" not in caught.value.message  # a secret is never shown


def test_http_servers_that_refuse_or_are_not_there_are_one_line(
    guarded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusal(url: str, headers_env: str | None = None) -> str:
        started = time.monotonic()
        with pytest.raises(UsageError) as caught:
            Toolbox.enable(["mcp:web"], [], settings(web(url, headers_env)))
        assert time.monotonic() - started < patience(5)
        return caught.value.message

    assert refusal(guarded_url).endswith(
        "answered HTTP 401 Unauthorized: does it need headers (headers_env)?"
    )
    monkeypatch.setenv("WEB_MCP_HEADERS", HEADER)
    wrong_path = guarded_url.replace("/mcp", "/nope")
    assert refusal(wrong_path, "WEB_MCP_HEADERS") == (
        f"MCP server 'web' ({wrong_path}): it answered HTTP 404 Not Found: is the url right?"
    )
    port = closed_port()
    said = refusal(f"http://user:pw@127.0.0.1:{port}/mcp?key=k")
    assert said.startswith(f"MCP server 'web' (http://127.0.0.1:{port}/mcp): cannot connect")
    assert "pw" not in said and "key=k" not in said  # credentials are never shown
    down = settings(web(f"http://127.0.0.1:{port}/mcp"))
    with Toolbox.enable(["mcp:web"], [], down, tolerant=True) as box:  # a chat goes on without it
        assert box.tools == () and len(box.notices) == 1 and "cannot connect" in box.notices[0]
    monkeypatch.setattr(mcpclient, "START_TIMEOUT", 1.0)
    with socket.socket() as mute:  # accepts connections (the backlog), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        silent = f"http://127.0.0.1:{mute.getsockname()[1]}/mcp"
        assert refusal(silent).endswith("no answer within 1 s")


def test_an_http_server_that_goes_away_is_an_error_output() -> None:
    with (
        http_server() as (url, process),
        Toolbox.enable(["mcp:web"], [], settings(web(url, None))) as box,
    ):
        assert run(box, "echo", text="hi") == ToolOutput("echo: hi")
        process.kill()
        process.wait()
        gone = run(box, "echo", text="anyone?")
        assert gone.error and gone.text.startswith(f"MCP server 'web' ({url}): cannot connect")
        again = run(box, "echo", text="anyone?")
        assert again.error and "failed during an earlier call: cannot connect" in again.text
    with (
        http_server() as (url, _),
        Toolbox.enable(["mcp:web"], [], settings(web(url, None))) as box,
    ):
        crashed = run(box, "crash")
        assert crashed.error and "stopped during the call" in crashed.text

"""The OpenAI-compatible backend: a real llama-cpp-python server, and servers that misbehave."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gptcli, gptcli_executable
from tests.fakeserver import FakeServer, Script
from tests.llama_server import LlamaServer, free_port
from tests.terminal import Terminal

FRANCE = "Name the capital city of France."
SECRET = "sk-test-0123456789-secret"


@pytest.fixture(scope="module")
def server(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    running = LlamaServer(bundled_model, tmp_path_factory.mktemp("server") / "server.log")
    yield running
    running.close()


def profile(gptcli: Gptcli, url: str, **extra: object) -> None:
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[profiles.box]", f'base_url = "{url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    config.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_one_shot_json_stream_and_model_list(gptcli: Gptcli, server: LlamaServer) -> None:
    answer = gptcli("ask", "--base-url", server.url, "-t", "0", "-n", "30", FRANCE)
    assert answer.returncode == 0, answer.stderr
    assert "Paris" in answer.stdout
    profile(gptcli, server.url, model="smol")
    data = json.loads(gptcli("ask", "-p", "box", "--json", "-t", "0", "-n", "30", FRANCE).stdout)
    assert data["model"] == "smol"
    assert data["usage"]["completion_tokens"] > 0
    assert data["timings"]["time_to_first_token_s"] > 0
    events = gptcli("ask", "-p", "box", "--jsonl", "-t", "0", "-n", "5", "Hi").stdout.splitlines()
    assert json.loads(events[0])["type"] == "start" and json.loads(events[-1])["type"] == "end"
    listed = gptcli("models", "list", "--profile", "box")
    assert listed.stdout.split() == ["smol"]


@pytest.mark.slow
def test_two_turn_session_records_the_server_never_the_key(
    gptcli: Gptcli, server: LlamaServer
) -> None:
    profile(gptcli, server.url, model="smol", api_key_env="GPTCLI_TEST_KEY")
    env = {"GPTCLI_TEST_KEY": SECRET}
    first = gptcli(
        "ask", "-p", "box", "--session", "remote", "-t", "0", "-n", "40", FRANCE, env=env
    )
    second = gptcli(
        "ask",
        "-p",
        "box",
        "-c",
        "-t",
        "0",
        "-n",
        "40",
        "What is the population of that city?",
        env=env,
    )
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "Paris" in second.stdout
    raw = (gptcli.home / "data" / "sessions" / "remote.json").read_text()
    saved = json.loads(raw)
    answer = saved["messages"][-1]
    assert answer["backend"] == "openai"
    assert answer["model"] == {
        "name": "smol",
        "backend": "openai",
        "base_url": server.url,
        "profile": "box",
    }
    assert SECRET not in raw
    assert SECRET not in first.stderr + second.stderr + first.stdout + second.stdout
    unset = gptcli("ask", "-p", "box", "hi")
    assert unset.returncode == 2
    assert "GPTCLI_TEST_KEY is not set" in unset.stderr


@pytest.mark.slow
def test_schema_through_the_server(gptcli: Gptcli, server: LlamaServer) -> None:
    schema = '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'
    result = gptcli(
        "ask", "--base-url", server.url, "-t", "0", "-n", "60", "--schema", schema, FRANCE
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout)["city"], str)


@pytest.mark.slow
def test_repl_against_the_server(gptcli: Gptcli, server: LlamaServer) -> None:
    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "--base-url", server.url, "-t", "0", "-n", "30"], env)
    try:
        term.wait_prompt(1)
        term.type_line(FRANCE)
        term.wait_prompt(2)
        assert "Paris" in "\n".join(term.scrollback())
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer(Script(steps=["ok"]))
    yield server
    server.close()


def test_connection_refused_and_dns_failure(gptcli: Gptcli) -> None:
    started = time.monotonic()
    refused = gptcli("ask", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "hi")
    assert refused.returncode == 6
    assert refused.stderr.startswith("gptcli: error: cannot connect to http://127.0.0.1:")
    dns = gptcli("ask", "--base-url", "http://no-such-host.invalid:8080/v1", "hi")
    assert dns.returncode == 6
    assert "cannot connect to http://no-such-host.invalid:8080/v1" in dns.stderr
    assert time.monotonic() - started < 20
    for result in (refused, dns):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_stall_times_out(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["stall"]
    profile(gptcli, fake.url, model="fake", timeout=1)
    started = time.monotonic()
    result = gptcli("ask", "-p", "box", "hi")
    assert result.returncode == 6
    assert "sent nothing for 1 s" in result.stderr
    assert time.monotonic() - started < 10


def test_ctrl_c_closes_a_stalled_stream_promptly(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["stall"]
    child = subprocess.Popen(
        [gptcli_executable(), "ask", "--base-url", fake.url, "-m", "fake", "hi"],
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    while not fake.script.requests:
        time.sleep(0.05)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=20)
    assert child.returncode == 130
    assert time.monotonic() - sent < 3
    assert b"Traceback" not in stderr


def test_http_errors(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.echo = SECRET  # a server that echoes the key back
    profile(gptcli, fake.url, model="fake", api_key_env="GPTCLI_TEST_KEY")
    env = {"GPTCLI_TEST_KEY": SECRET}
    fake.script.steps = ["401"]
    denied = gptcli("ask", "-p", "box", "hi", env=env)
    assert denied.returncode == 6
    assert "HTTP 401 (check $GPTCLI_TEST_KEY)" in denied.stderr
    assert SECRET not in denied.stderr
    assert fake.script.requests[-1][1]["Authorization"] == f"Bearer {SECRET}"
    fake.script.steps = ["404"]
    missing = gptcli("ask", "-p", "box", "hi", env=env)
    assert missing.returncode == 3
    assert "no model 'fake'" in missing.stderr


def test_429_honours_retry_after_then_succeeds(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["429", "ok"]
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world\n"
    (first, _), (second, _) = fake.script.requests
    assert second - first >= 0.9


def test_5xx_is_retried_a_bounded_number_of_times(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["500"]
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "hi")
    assert result.returncode == 6
    assert "HTTP 500" in result.stderr
    assert len(fake.script.requests) == 4


def test_cut_stream_keeps_the_partial_answer(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["cut"]
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--session", "cut", "hi")
    assert result.returncode == 6
    assert result.stdout.startswith("Hello wor")
    assert "cut the stream in the middle" in result.stderr
    saved = json.loads((gptcli.home / "data" / "sessions" / "cut.json").read_text())
    assert saved["messages"][-1]["content"] == "Hello wor"
    assert saved["messages"][-1]["finish_reason"] == "interrupted"
    assert len(fake.script.requests) == 1  # never retried after the first token


def test_malformed_chunk(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["malformed"]
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "hi")
    assert result.returncode == 6
    assert "malformed chunk" in result.stderr
    assert result.stderr.count("\n") == 1

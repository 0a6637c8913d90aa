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
from tests.timing import patience

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
def test_a_long_input_to_a_server_that_does_not_say_its_window(
    gptcli: Gptcli, server: LlamaServer
) -> None:
    # llama-cpp-python's server says neither its window (2,048 here) nor, when streaming,
    # why it refuses: it closes the stream. gptcli says what may be the cause, and --ctx
    # then makes it the context error before anything is sent.
    document = "Every sentence here is filler for the test. " * 250
    ask = ("ask", "--base-url", server.url, "-m", "smol", "Summarise.")
    silent = gptcli(*ask, input=document)
    assert silent.returncode == 6
    assert silent.stderr == (
        "gptcli: error: the server closed the stream before answering; the input (about 3153 "
        "tokens) may be longer than its context window: say that window with --ctx\n"
    )
    told = gptcli(*ask, "--ctx", "2048", input=document)
    assert told.returncode == 4
    assert "fit the 2,048-token context window" in told.stderr


@pytest.mark.slow
def test_truncate_against_the_server_with_its_window(gptcli: Gptcli, server: LlamaServer) -> None:
    # Token counts are estimated, and this text has a tenth more tokens than the estimate
    # (3.1 characters each): a window set a little below the server's 2,048 leaves the margin.
    long_session(gptcli.home)
    result = gptcli(
        "ask",
        "--base-url",
        server.url,
        "-m",
        "smol",
        "--ctx",
        "1600",
        "--session",
        "long",
        "--on-overflow",
        "truncate",
        "--json",
        "-t",
        "0",
        "-n",
        "20",
        FRANCE,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["context"]["dropped_messages"] > 0
    assert data["usage"]["prompt_tokens"] < 2048  # the server's own count


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
    assert time.monotonic() - started < patience(20)
    for result in (refused, dns):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_stall_times_out(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["stall"]
    profile(gptcli, fake.url, model="fake", timeout=1)
    started = time.monotonic()
    result = gptcli("ask", "-p", "box", "hi")
    assert result.returncode == 6
    assert "sent nothing for 1 s" in result.stderr
    assert time.monotonic() - started < patience(10)


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
    _, stderr = child.communicate(timeout=patience(20))
    assert child.returncode == 130
    assert time.monotonic() - sent < patience(3)
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


def test_a_retry_after_that_is_not_ascii_digits_is_ignored(
    gptcli: Gptcli, fake: FakeServer
) -> None:
    fake.script.steps = ["429", "ok"]
    fake.script.retry_after = "²"  # str.isdigit() says yes, int() says no
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world\n"


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


def long_session(home: Path, turns: int = 8) -> None:
    """A saved conversation of about 2,500 estimated tokens."""
    from gptcli.store.sessions import Session, SessionStore, StoredMessage

    def fill(session: Session) -> None:
        for n in range(turns):
            session.messages.append(StoredMessage("user", f"Tell me about town number {n}."))
            session.messages.append(
                StoredMessage("assistant", f"Town {n} has a market, a river and a mill. " * 25)
            )

    SessionStore(home / "data").update("long", fill, create=True)


def test_llama_server_props_give_the_window_and_the_policies_use_it(
    gptcli: Gptcli, fake: FakeServer
) -> None:
    fake.script.props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2}
    short = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--json", "hi")
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout)["context"]["window"] == 2048
    assert fake.script.gets == ["/props"]  # at the server's root, and nothing more asked
    long_session(gptcli.home)
    ask = ("ask", "--base-url", fake.url, "-m", "fake", "--session", "long", "--json")
    refused = gptcli(*ask, "--on-overflow", "error", FRANCE)
    assert refused.returncode == 4
    assert refused.stdout == ""
    assert "but only 1,792 fit the 2,048-token context window" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert len(fake.script.bodies) == 1  # refused before anything was sent
    truncated = gptcli(*ask, "--on-overflow", "truncate", FRANCE)
    assert truncated.returncode == 0, truncated.stderr
    context = json.loads(truncated.stdout)["context"]
    assert context["window"] == 2048
    assert context["dropped_messages"] > 0
    assert "oldest messages were dropped" in truncated.stderr
    sent = fake.script.bodies[-1]["messages"]
    assert 1 < len(sent) < 17 and sent[-1] == {"role": "user", "content": FRANCE}


def test_vllm_max_model_len_for_the_model_in_use(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.models = [
        {"id": "first", "object": "model", "max_model_len": 1000},
        {"id": "fake", "object": "model", "max_model_len": 3000},
    ]
    named = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--json", "hi")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["context"]["window"] == 3000
    assert fake.script.gets == ["/props", "/v1/models"]
    served_first = gptcli("ask", "--base-url", fake.url, "--json", "hi")
    assert json.loads(served_first.stdout)["context"]["window"] == 1000
    fake.script.models = [{"id": "fake", "object": "model", "owned_by": "me"}]
    silent = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--json", "hi")
    assert json.loads(silent.stdout)["context"]["window"] == 8192  # says nothing: the fallback


def test_ctx_and_the_profile_ctx_win_over_the_server(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.props = {"default_generation_settings": {"n_ctx": 2048}}
    flag = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--ctx", "1000", "--json", "hi")
    assert json.loads(flag.stdout)["context"]["window"] == 1000
    profile(gptcli, fake.url, model="fake", ctx=1500)
    chosen = gptcli("ask", "-p", "box", "--json", "hi")
    assert json.loads(chosen.stdout)["context"]["window"] == 1500
    assert fake.script.gets == []  # the server is not even asked


def test_a_stalled_props_costs_seconds_and_leaves_the_fallback(
    gptcli: Gptcli, fake: FakeServer
) -> None:
    fake.script.props_stall = True
    started = time.monotonic()
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["context"]["window"] == 8192
    assert time.monotonic() - started < patience(10)
    assert fake.script.gets == ["/props"]  # a server that stalls is not asked again


REFUSED = (
    "gptcli: error: the input is 3,539 tokens but the server's context window holds 2,048 (the "
    "server refused it; try --ctx 2048 with --on-overflow truncate|summarize, or --chunked for "
    "long documents)\n"
)


@pytest.mark.parametrize(
    "step", ["ctx-llama-server", "ctx-vllm", "ctx-vllm-new", "ctx-openai", "ctx-in-stream"]
)
def test_a_context_refusal_is_the_context_error(
    gptcli: Gptcli, fake: FakeServer, step: str
) -> None:
    fake.script.steps = [step]
    # A server that claims a larger window than it serves: its refusal still counts.
    fake.script.props = {"default_generation_settings": {"n_ctx": 8192}}
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", "--session", "s", FRANCE)
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr == REFUSED
    assert len(fake.script.requests) == 1  # never retried


def test_a_refusal_teaches_the_backend_the_servers_window(fake: FakeServer) -> None:
    # What lets the chat's default policy (truncate) fit the next turn.
    from gptcli.config import SamplingOptions
    from gptcli.engine.base import Cancellation, Message
    from gptcli.engine.openai import OpenAIBackend, RemoteOptions
    from gptcli.errors import ContextOverflowError

    fake.script.steps = ["ctx-vllm", "ok"]
    backend = OpenAIBackend(RemoteOptions(fake.url, "fake"))
    try:
        assert backend.details.context_size == 8192
        with pytest.raises(ContextOverflowError) as refused:
            list(backend.stream([Message("user", "hi")], SamplingOptions(), Cancellation()))
        assert (refused.value.needed, refused.value.available) == (3539, 2048)
        assert backend.details.context_size == 2048
    finally:
        backend.close()


def test_other_refusals_stay_remote_errors(gptcli: Gptcli, fake: FakeServer) -> None:
    fake.script.steps = ["400"]
    result = gptcli("ask", "--base-url", fake.url, "-m", "fake", FRANCE)
    assert result.returncode == 6
    assert "HTTP 400: " in result.stderr and "temperature must be positive" in result.stderr

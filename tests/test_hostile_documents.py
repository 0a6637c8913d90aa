"""Hostile JSON and TOML wherever gptcli reads them: session files, the model registry,
config and role files, and a server's stream. Only the project's own errors may escape:
one line on stderr and a documented exit status, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptcli.conversation.recorder import conversation_of
from gptcli.errors import GptcliError
from gptcli.store.sessions import SessionStore, StoredMessage
from gptcli.store.transcript import to_json, to_markdown
from tests.conftest import Gptcli
from tests.depth import rounds
from tests.fakeserver import FakeServer, Script

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_TOML = "a = " + "[" * 100_000 + "]" * 100_000 + "\n"
EXAMPLES = rounds(100, 400, "GPTCLI_FUZZ_EXAMPLES")


def one_line_error(result_stderr: str) -> None:
    assert "Traceback" not in result_stderr
    assert result_stderr.count("\n") == 1, result_stderr
    assert result_stderr.startswith("gptcli:"), result_stderr


@pytest.mark.parametrize(
    ("where", "content", "command", "status"),
    [
        ("config/config.toml", DEEP_TOML, ["ask", "hi"], 2),
        ("config/roles/deep.toml", DEEP_TOML, ["roles", "show", "deep"], 2),
        ("data/models.json", DEEP_JSON, ["models", "list"], 2),
        ("data/sessions/deep.json", DEEP_JSON, ["sessions", "show", "deep"], 1),
    ],
    ids=["config", "role", "registry", "session"],
)
def test_deeply_nested_files_are_one_clear_error(
    gptcli: Gptcli, where: str, content: str, command: list[str], status: int
) -> None:
    path = gptcli.home / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    result = gptcli(*command)
    assert result.returncode == status, result.stderr
    one_line_error(result.stderr)
    assert "nested too deeply" in result.stderr


@pytest.fixture
def nesting_server() -> Iterator[FakeServer]:
    server = FakeServer(Script(steps=["nested"]))
    yield server
    server.close()


def test_a_deeply_nested_chunk_from_a_server(gptcli: Gptcli, nesting_server: FakeServer) -> None:
    result = gptcli("ask", "--base-url", nesting_server.url, "-m", "fake", "hi")
    assert result.returncode == 6
    one_line_error(result.stderr)
    assert "malformed chunk" in result.stderr


def valid_session(store: SessionStore) -> bytes:
    def fill(session: object) -> None:
        assert hasattr(session, "messages")
        session.messages += [
            StoredMessage("user", "Q\x00\ud800 ✓"),
            StoredMessage("assistant", "A", model={"name": "m"}, finish_reason="stop", seed=3),
        ]

    store.update("base", fill, create=True)
    return store.path("base").read_bytes()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
session_like = st.fixed_dictionaries(
    {"schema": st.integers(-2, 3) | json_values, "messages": st.lists(json_values, max_size=4)},
    optional={"title": json_values, "system": json_values, "created": json_values},
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.one_of(
        st.binary(max_size=300),
        session_like.map(lambda d: json.dumps(d).encode()),
        st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=8)),
    )
)
def test_the_session_loader_raises_only_its_own_errors(
    tmp_path: Path, case: bytes | tuple[int, bytes]
) -> None:
    store = SessionStore(tmp_path / "store")
    if isinstance(case, tuple):  # a valid file with a few bytes overwritten
        base = bytearray(valid_session(store))
        offset, junk = case
        offset %= len(base)
        base[offset : offset + len(junk)] = junk
        data = bytes(base)
    else:
        data = case
    store.path("case").parent.mkdir(parents=True, exist_ok=True)
    store.path("case").write_bytes(data)
    try:
        loaded = store.load("case")
    except GptcliError:
        return
    for message in loaded.messages:
        assert isinstance(message.content, str)
    store.list()  # and whatever a loaded session feeds: the chat, show and export
    conversation_of(loaded)
    to_markdown(loaded)
    json.loads(to_json(loaded))

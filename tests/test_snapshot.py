"""KV-state snapshots: the same continuation as re-processing, and never trusted blindly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.engine.base import Cancellation, Message
from gptcli.engine.llama import LlamaBackend, LoadOptions
from gptcli.store.snapshot import MAGIC, load_snapshot, save_snapshot
from tests.conftest import WORKER_THREADS

pytestmark = pytest.mark.slow
GREEDY = SamplingOptions(temperature=0, max_tokens=30)


def engine(model: Path, ctx: int = 2048) -> LlamaBackend:
    # The portable CPU path: these tests are about state, not kernels.
    return LlamaBackend(LoadOptions(model, ctx=ctx, threads=WORKER_THREADS, extra_buffers=False))


def answer(backend: LlamaBackend, conversation: Conversation, text: str) -> Reply:
    reply = Reply()
    for _ in conversation.send(text, backend, GREEDY, Cancellation(), reply):
        pass
    return reply


@pytest.fixture(scope="module")
def saved(
    bundled_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Message]]:
    path = tmp_path_factory.mktemp("snap") / "s.kv"
    backend = engine(bundled_model)
    conversation = Conversation()
    answer(backend, conversation, "Name the capital city of France.")
    answer(backend, conversation, "Tell me about its river.")
    assert save_snapshot(path, backend, "sha") > 50
    backend.close()
    return path, list(conversation.messages)


def test_resume_with_and_without_snapshot_continues_the_same(
    bundled_model: Path, saved: tuple[Path, list[Message]]
) -> None:
    path, messages = saved
    with_state = engine(bundled_model)
    assert load_snapshot(path, with_state, "sha") > 50
    restored = answer(with_state, Conversation(messages=list(messages)), "And its museums?")
    assert restored.finished is not None
    assert restored.finished.timings.cached_tokens > 50  # the history was not processed again
    with_state.close()
    without = engine(bundled_model)
    reprocessed = answer(without, Conversation(messages=list(messages)), "And its museums?")
    without.close()
    assert reprocessed.finished is not None and reprocessed.finished.timings.cached_tokens < 50
    assert restored.text == reprocessed.text


def test_mismatched_or_tampered_snapshots_are_ignored(
    bundled_model: Path, saved: tuple[Path, list[Message]], tmp_path: Path
) -> None:
    path, _ = saved
    backend = engine(bundled_model)
    try:
        assert load_snapshot(path, backend, "another-model") == 0
        other_ctx = engine(bundled_model, ctx=1024)
        assert load_snapshot(path, other_ctx, "sha") == 0
        other_ctx.close()
        data = path.read_bytes()
        cases = {
            "truncated": data[: len(data) - 1000],
            "no magic": b"X" + data[1:],
            "bad header": MAGIC + b"{not json\n" + data[len(MAGIC) :],
            "empty": b"",
        }
        for name, blob in cases.items():
            bad = tmp_path / f"{name}.kv"
            bad.write_bytes(blob)
            os.chmod(bad, 0o600)
            assert load_snapshot(bad, backend, "sha") == 0, name
        shared = tmp_path / "shared.kv"
        shared.write_bytes(data)
        os.chmod(shared, 0o644)  # readable by others: not ours alone, not trusted
        assert load_snapshot(shared, backend, "sha") == 0
        reply = answer(backend, Conversation(), "Name the capital city of France.")
        assert "Paris" in reply.text  # the engine is still sound after the refusals
    finally:
        backend.close()

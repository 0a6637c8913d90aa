"""The KV snapshot kept beside a saved session, shared by the chat and `ask`.

Resuming a session restores it, so the history is not processed again; after the
session changes it is written again. ``store.snapshot`` decides whether a file is
valid for the running engine (model, context size, chat template, llama.cpp,
offload). The tokens and the KV cache are written together in one atomic file, and
the engine keeps only the prefix of those tokens that the new prompt shares, so a
snapshot older or newer than the saved history (two processes answering in one
session) costs time, never a wrong answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gptcli.conversation.recorder import SessionRecorder, model_facts
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend
from gptcli.store.sessions import SessionStore
from gptcli.store.snapshot import load_snapshot, save_snapshot

# Ending on a signal, only a KV state this size is written: well under a second on an SSD.
HURRIED_LIMIT = 256 * 2**20


@dataclass(frozen=True)
class StateWrite:
    """What writing one snapshot cost: tokens kept, bytes on disk, seconds."""

    tokens: int
    size: int
    seconds: float


def state_path(store: SessionStore, name: str) -> Path:
    return store.directory / f"{name}.kv"


def restore_state(store: SessionStore, name: str, backend: Backend, cache_dir: Path) -> int:
    """Load the session's snapshot into ``backend`` if it is valid for it; tokens restored."""
    snapshots = abilities(backend).snapshots
    if snapshots is None:
        return 0
    digest = _model_sha256(backend, cache_dir)
    if digest is None:
        return 0
    return load_snapshot(state_path(store, name), snapshots, digest)


def save_state(
    recorder: SessionRecorder | None, backend: Backend, cache_dir: Path, hurried: bool = False
) -> StateWrite | None:
    """Write ``backend``'s KV cache beside the session ``recorder`` saves; None if not written.

    Nothing is written for a session that is not saved (none, or its saving failed).
    ``hurried`` (the program is ending on a signal) skips a state too large to write
    at once. Raises OSError when the disk refuses.
    """
    snapshots = abilities(backend).snapshots
    if recorder is None or recorder.failed or snapshots is None:
        return None
    if not recorder.store.exists(recorder.name):
        return None
    digest = _model_sha256(backend, cache_dir)
    if digest is None:
        return None
    path = state_path(recorder.store, recorder.name)
    start = time.perf_counter()
    limit = HURRIED_LIMIT if hurried else None
    tokens = save_snapshot(path, snapshots, digest, max_bytes=limit)
    if not tokens:
        return None
    return StateWrite(tokens, path.stat().st_size, time.perf_counter() - start)


def _model_sha256(backend: Backend, cache_dir: Path) -> str | None:
    details = backend.details
    digest = model_facts(Path(details.path), details.name, cache_dir).get("sha256")
    return digest if isinstance(digest, str) else None

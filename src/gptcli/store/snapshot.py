"""Saved KV-cache snapshots beside a session, for resuming without re-processing.

A snapshot is trusted only if everything matches: the file is the user's own
and private, its header parses, its key (model file, context size, chat
template, llama.cpp version, offload, KV cache type) equals the running engine's,
and its length is what the header says (``store.kvfile``). Anything else is
ignored and the history is processed again, which is slower but always right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from gptcli.store.kvfile import read_kv_file, write_kv_file

MAGIC = b"GPTCLI-KV 1\n"


@runtime_checkable
class Snapshotting(Protocol):
    def state_key(self) -> dict[str, object]: ...

    def state_size(self) -> int: ...

    def export_state(self) -> tuple[list[int], bytes]: ...

    def import_state(self, tokens: list[int], state: bytes) -> bool: ...


def _key(engine: Snapshotting, model_sha256: str) -> dict[str, object]:
    return {**engine.state_key(), "model_sha256": model_sha256}


def save_snapshot(
    path: Path, engine: Snapshotting, model_sha256: str, max_bytes: int | None = None
) -> int:
    """Write the engine's KV cache to ``path``; returns the number of tokens saved.

    With ``max_bytes``, a larger state is not written (0 is returned): the caller is
    short of time, and a missing snapshot only costs the next resume its prefill.
    """
    if max_bytes is not None and engine.state_size() > max_bytes:
        return 0
    tokens, state = engine.export_state()
    if not tokens or not state:
        return 0
    write_kv_file(path, MAGIC, {"key": _key(engine, model_sha256), "tokens": tokens}, state)
    return len(tokens)


def load_snapshot(path: Path, engine: Snapshotting, model_sha256: str) -> int:
    """Restore ``path`` into the engine if it is valid for it; returns tokens restored (0: none)."""
    try:
        header, state = read_kv_file(path, MAGIC, checksum=False)  # older files have none
    except (OSError, ValueError):
        return 0
    if header.get("key") != _key(engine, model_sha256):
        return 0
    tokens = header["tokens"]
    return len(tokens) if engine.import_state(tokens, state) else 0

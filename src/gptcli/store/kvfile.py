"""One file format for saved KV state: a magic line, a JSON header line, then the state.

Session snapshots and prompt-cache entries are both written this way: atomically
(temp file, fsync, rename), private to the user. A file is read back only if it is
the user's own, not readable by others, its header parses and the state's length is
what the header says, and its sha256 too (a flipped bit in the state would load
without complaint and change answers); anything else is ``ValueError`` (or
``OSError``), and the caller processes the tokens again instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gptcli.parsing import loads_json
from gptcli.paths import write_private_file

MAX_HEADER = 4 * 1024 * 1024
MAX_STATE = 16 * 1024**3


def write_kv_file(path: Path, magic: bytes, header: dict[str, Any], state: bytes) -> int:
    """Write ``header`` (the state's length and sha256 added) and ``state`` to ``path``;
    bytes written."""
    digest = hashlib.sha256(state).hexdigest()
    line = json.dumps({**header, "state_bytes": len(state), "state_sha256": digest}).encode()
    data = magic + line + b"\n" + state
    write_private_file(path, data)
    return len(data)


def read_kv_header(path: Path, magic: bytes) -> tuple[dict[str, Any], int]:
    """The header of ``path``, and where its state starts; raises ValueError or OSError."""
    stat = path.stat()
    if stat.st_uid != os.getuid() or stat.st_mode & 0o077:
        raise ValueError("not a private file of this user")
    if stat.st_size > MAX_STATE + MAX_HEADER:
        raise ValueError("too large")
    with path.open("rb") as handle:
        if handle.read(len(magic)) != magic:
            raise ValueError("not a KV state file of this version")
        header = loads_json(handle.readline(MAX_HEADER))
        start = handle.tell()
    if not isinstance(header, dict) or not isinstance(header.get("state_bytes"), int):
        raise ValueError("a header without its state's length")
    if stat.st_size - start != header["state_bytes"] or not header["state_bytes"]:
        raise ValueError("truncated")
    tokens = header.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ValueError("a header without tokens")
    return header, start


def read_kv_file(path: Path, magic: bytes, checksum: bool = True) -> tuple[dict[str, Any], bytes]:
    """The header and the state of ``path``, whose sha256 must match the header's (files
    written before it was recorded pass without ``checksum``); raises ValueError or OSError."""
    header, start = read_kv_header(path, magic)
    with path.open("rb") as handle:
        handle.seek(start)
        state = handle.read(header["state_bytes"] + 1)
    if len(state) != header["state_bytes"]:
        raise ValueError("truncated")
    recorded = header.get("state_sha256")
    if (recorded is not None or checksum) and recorded != hashlib.sha256(state).hexdigest():
        raise ValueError("its state does not match its checksum")
    return header, state

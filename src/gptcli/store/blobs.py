"""Attachments kept for sessions: each stored once, named by the sha256 of its bytes.

``<data dir>/attachments/<sha256>``, files 0600 in a 0700 directory, written
atomically. A blob no session references any more is removed with the last
session that did. Storing blobs and writing the turn that references them happen
under one lock, and removal takes it too: a blob is never removed between being
stored and being referenced.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gptcli.paths import ensure_private_dir, write_private_file

HASH = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Content-addressed files under ``<data dir>/attachments``."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "attachments"

    def path(self, digest: str) -> Path:
        if not HASH.match(digest):
            raise ValueError(f"not a sha256: {digest!r}")
        return self.directory / digest

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold while storing blobs and referencing them, or while removing unused ones."""
        from filelock import FileLock

        ensure_private_dir(self.directory)
        with FileLock(str(self.directory / ".lock"), timeout=60, mode=0o600):
            yield

    def put(self, data: bytes) -> str:
        """Keep ``data`` (once: a copy already there is only touched); its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        ensure_private_dir(self.directory)
        if path.is_file() and path.stat().st_size == len(data):
            return digest
        write_private_file(path, data)
        return digest

    def get(self, digest: str) -> bytes | None:
        """The stored bytes, or None when the copy is missing or does not match its hash."""
        try:
            data = self.path(digest).read_bytes()
        except (OSError, ValueError):
            return None
        return data if hashlib.sha256(data).hexdigest() == digest else None

    def remove_unused(self, candidates: Iterable[str], used: set[str]) -> list[str]:
        """Remove each of ``candidates`` that is not in ``used``; the digests removed."""
        removed = []
        for digest in set(candidates) - used:
            try:
                self.path(digest).unlink()
                removed.append(digest)
            except (OSError, ValueError):
                continue
        return removed

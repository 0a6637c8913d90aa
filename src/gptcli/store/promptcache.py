"""The prompt cache on disk: KV state of prompts evaluated before, found by their tokens.

One file per entry (``store.kvfile``'s format): a header with the key (model file's
sha256, KV cache type, attention kernel, llama.cpp version, offload), the model's
name and the tokens, then llama.cpp's state of those tokens' cells. The name is
``<key>-<first 256 tokens>-<all tokens>.kv`` (digests), so a lookup reads only
the headers of entries for this model and engine that share the prompt's first
256 tokens, and two processes writing one prompt write the same file: each
renames its own complete temp file over it, and both finish. Last use is the
file's mtime; after a write the least recently used entries go until the
directory holds at most ``max_bytes``. A file that fails any check is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gptcli.paths import ensure_private_dir
from gptcli.store.kvfile import read_kv_file, read_kv_header, write_kv_file
from gptcli.tokens import common_prefix

MAGIC = b"GPTCLI-PROMPT 1\n"
HEAD_TOKENS = 256  # the shortest prefix worth an entry; its digest is in the file name
STALE_TEMP = 3600.0  # seconds after which a temp file is a crashed writer's


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tokens_digest(tokens: Sequence[int]) -> str:
    return _digest(array("q", tokens).tobytes())


@dataclass(frozen=True)
class CachedPrompt:
    """An entry found for a prompt: its file name, tokens, state, and the tokens shared."""

    name: str
    tokens: list[int]
    state: bytes
    shared: int


@dataclass(frozen=True)
class CacheEntry:
    """One entry as ``gptcli cache list`` shows it."""

    name: str
    model: str
    tokens: int
    size: int
    last_used: float
    kv_type: str  # the KV cache's type the state was saved in ("?" when unreadable)

    @property
    def short_id(self) -> str:
        """Unique among the entries, short enough for a table: the digest of what the
        entry is valid for (model file, llama.cpp, KV type) and of its tokens."""
        keyed, _, full = self.name.removesuffix(".kv").partition("-")
        return f"{keyed[:6]}-{full.rpartition('-')[2][:10]}"


class PromptCacheDir:
    """The entries of one model file in ``directory``, bounded to ``max_bytes`` in all."""

    def __init__(
        self, directory: Path, max_bytes: int, model_sha256: Callable[[], str | None], model: str
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._sha256_of = model_sha256  # None: the file cannot be read whole (no entries)
        self._sha256: str | None = None
        self._hashed = False
        self._model = model

    @staticmethod
    def _name(full_key: Mapping[str, object], tokens: Sequence[int], full: str = "*") -> str:
        keyed = _digest(json.dumps(full_key, sort_keys=True).encode())
        return f"{keyed}-{_tokens_digest(tokens[:HEAD_TOKENS])}-{full}.kv"

    def _key(self, key: Mapping[str, object]) -> dict[str, object] | None:
        # The model file is read whole only once a prompt is long enough to cache.
        if not self._hashed:
            self._sha256, self._hashed = self._sha256_of(), True
        return None if self._sha256 is None else {**key, "model_sha256": self._sha256}

    def find(
        self, key: Mapping[str, object], tokens: Sequence[int], minimum: int
    ) -> CachedPrompt | None:
        """The entry sharing the longest prefix (at least ``minimum`` tokens, leaving the
        prompt's last token to evaluate) with ``tokens``; None if there is none."""
        limit = len(tokens) - 1
        if limit < max(minimum, HEAD_TOKENS) or (full_key := self._key(key)) is None:
            return None
        best: tuple[int, Path] | None = None
        for path in self.directory.glob(self._name(full_key, tokens)):
            try:
                header, _ = read_kv_header(path, MAGIC)
            except FileNotFoundError:
                continue  # evicted by another process meanwhile
            except (OSError, ValueError):
                self.drop(path.name)
                continue
            if header.get("key") != full_key:
                self.drop(path.name)
                continue
            shared = common_prefix(header["tokens"], tokens, limit)
            if shared >= minimum and (best is None or shared > best[0]):
                best = (shared, path)
        if best is None:
            return None
        shared, path = best
        try:
            header, state = read_kv_file(path, MAGIC)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.drop(path.name)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: last to be evicted
        return CachedPrompt(path.name, header["tokens"], state, shared)

    def keep(
        self, key: Mapping[str, object], tokens: Sequence[int], state: bytes, replaces: str | None
    ) -> int:
        """Write an entry for ``tokens``; ``replaces``, an entry it extends, goes. Bytes
        written (0: larger than the whole cache may be). Raises OSError where the disk refuses."""
        full_key = self._key(key)
        if full_key is None or len(state) + 16 * len(tokens) > self._max_bytes:
            return 0
        name = self._name(full_key, tokens, _tokens_digest(tokens))
        ensure_private_dir(self.directory)
        header = {"key": full_key, "model": self._model, "tokens": list(tokens)}
        written = write_kv_file(self.directory / name, MAGIC, header, state)
        if replaces is not None and replaces != name:
            self.drop(replaces)
        trim(self.directory, self._max_bytes, keep=name)
        return written

    def drop(self, name: str) -> None:
        """Delete an entry (a corrupt one, or one a longer entry replaces)."""
        with contextlib.suppress(OSError):
            (self.directory / Path(name).name).unlink()


def _files(directory: Path) -> list[tuple[Path, os.stat_result]]:
    found = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if path.name.endswith(".kv"):
                with contextlib.suppress(OSError):
                    found.append((path, path.stat()))
    return found


def trim(directory: Path, max_bytes: int, keep: str | None = None) -> int:
    """Delete the least recently used entries until at most ``max_bytes`` remain (never
    ``keep``), and temp files that crashed writers left; entries deleted."""
    now = time.time()
    with contextlib.suppress(OSError):
        for path in directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_TEMP:
                    path.unlink()
    entries = sorted(_files(directory), key=lambda entry: entry[1].st_mtime, reverse=True)
    total, removed = 0, 0
    for path, stat in entries:
        total += stat.st_size
        if total > max_bytes and path.name != keep:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
            total -= stat.st_size
    return removed


def list_entries(directory: Path) -> list[CacheEntry]:
    """Every entry, most recently used first (an unreadable one as model "?")."""
    entries = []
    for path, stat in _files(directory):
        try:
            header, _ = read_kv_header(path, MAGIC)
            model, tokens = str(header.get("model", "?")), len(header["tokens"])
            key = header.get("key")
            kv_type = str(key.get("kv_type", "?")) if isinstance(key, dict) else "?"
        except (OSError, ValueError, KeyError, TypeError):
            model, tokens, kv_type = "?", 0, "?"
        entry = CacheEntry(path.name, model, tokens, stat.st_size, stat.st_mtime, kv_type)
        entries.append(entry)
    return sorted(entries, key=lambda entry: entry.last_used, reverse=True)


def clear(directory: Path) -> tuple[int, int]:
    """Delete every entry; (entries, bytes) deleted."""
    count, size = 0, 0
    for path, stat in _files(directory):
        with contextlib.suppress(OSError):
            path.unlink()
            count, size = count + 1, size + stat.st_size
    trim(directory, 0)
    return count, size

"""The prompt cache as the engine uses it: earlier runs' cells for a prompt's prefix.

Before the first answer of a backend (``ask``, a chat's first turn) or of a batch
(its first item), the store (``store.promptcache``, given by the loader) is asked
for the entry sharing the longest prefix, at least ``CACHE_MIN`` tokens, with the
prompt; its cells are loaded into the slot, and the scheduler keeps the shared part
as it keeps a conversation's own cells (``cached_prompt_tokens`` counts them); a
batch's other slots copy it from there as they copy any shared prefix. Afterwards,
when that answer evaluated ``CACHE_MIN`` prompt tokens or more that no entry held,
its cells are written as a new entry: ``ask`` and a batch cut the slot back to the
prompt first (a batch: to the longest prefix its first item shares with what a slot
holds), a chat writes its slot whole, the answer's cells too, so that its next turn
evaluates nothing again. An entry the new one extends is replaced. An entry
llama.cpp refuses is deleted, and the prompt is evaluated as if there were none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gptcli.engine.scheduler import Scheduler
from gptcli.tokens import common_prefix

CACHE_MIN = 256  # fewer shared tokens than this are quicker to evaluate than to read


class CachedPrefix(Protocol):
    """An entry found for a prompt."""

    @property
    def name(self) -> str: ...

    @property
    def tokens(self) -> list[int]: ...

    @property
    def state(self) -> bytes: ...

    @property
    def shared(self) -> int: ...


class PromptStore(Protocol):
    """Where entries live (``store.promptcache.PromptCacheDir``), for one model file."""

    def find(
        self, key: Mapping[str, object], tokens: Sequence[int], minimum: int
    ) -> CachedPrefix | None: ...

    def keep(
        self, key: Mapping[str, object], tokens: Sequence[int], state: bytes, replaces: str | None
    ) -> int: ...

    def drop(self, name: str) -> None: ...


@dataclass(frozen=True)
class PromptWrite:
    """An entry written: its tokens and bytes."""

    tokens: int
    size: int


class PromptCache:
    """Restores the first answer's prompt prefix from ``store`` and writes it back after."""

    def __init__(self, store: PromptStore, key: Mapping[str, object]) -> None:
        self._store = store
        self._key = key
        self._used = False
        self._prompt: list[int] | None = None  # the prompt to write back, once answered
        self._restored: tuple[str, list[int], int] | None = None  # name, tokens, shared

    def restore(self, scheduler: Scheduler, prompt: list[int], slot: int = 0) -> int:
        """Load the best entry for ``prompt`` into ``slot`` (free) for the first answer
        only; the tokens it shares with ``prompt``."""
        if self._used:
            return 0
        self._used = True
        own = common_prefix(scheduler.cells(slot), prompt, len(prompt) - 1)
        if len(prompt) - 1 - own < CACHE_MIN:
            return 0  # the slot holds it already, or there is too little to gain
        self._prompt = prompt
        found = self._store.find(self._key, prompt, max(CACHE_MIN, own + 1))
        if found is None:
            return 0
        if not scheduler.import_state(found.tokens, found.state, slot):
            self._store.drop(found.name)
            return 0
        self._restored = (found.name, found.tokens, found.shared)
        return found.shared

    def save(self, scheduler: Scheduler, keep_answer: bool = False) -> PromptWrite | None:
        """Write the cells of the first answer's prompt as an entry, from the slot that
        holds most of it, if they add ``CACHE_MIN`` tokens to what was restored; that slot
        keeps only them, or, ``keep_answer``, keeps all its cells (a chat's next turn
        needs them) and they are all written. Raises OSError where the disk refuses.

        In a batch, where slots took other items since, that is the longest prefix the
        first item shares with one of them (a system prompt and a document).
        """
        prompt, self._prompt = self._prompt, None
        if prompt is None:
            return None
        slots = range(scheduler.slot_count)
        held = [common_prefix(scheduler.cells(s), prompt, len(prompt)) for s in slots]
        cells = max(held)
        slot = held.index(cells)
        name, tokens, shared = self._restored or ("", [], 0)
        if cells - shared < CACHE_MIN:
            return None
        if not keep_answer:
            scheduler.forget(slot, cells)
        kept, state = scheduler.export_state(slot)
        extends = bool(tokens) and kept[: len(tokens)] == tokens
        written = self._store.keep(self._key, kept, state, name if extends else None)
        return PromptWrite(len(kept), written) if written else None

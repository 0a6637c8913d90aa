"""What a backend can do beyond answering, declared as protocols and looked up here only.

Every backend counts tokens and answers (:class:`gptcli.engine.base.Backend`).
Some can also save and restore their KV cache (llama.cpp in process), answer
many prompts in slots of their own (llama.cpp's scheduler), describe where
an answer came from in their own words (a server and its profile), or take
images and audio (a local model with a projector, a server). Code above
the engine asks :func:`abilities` instead of testing for a backend's class.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gptcli.engine.base import Backend, BatchJob, BatchOutcome, Cancellation, MediaFacts
from gptcli.engine.promptcache import PromptWrite
from gptcli.media import MediaItem


@runtime_checkable
class Media(Protocol):
    """A backend that may take images and audio in a message (see gptcli.media)."""

    def media_facts(self) -> MediaFacts | None:
        """What it takes; None where it takes no media (a local model without a projector)."""
        ...

    def prepare_media(self, item: MediaItem) -> float:
        """Make ``item`` ready to send (a local model encodes it now); the seconds it took
        (0.0 when it was ready). Raises GptcliError for media it cannot read."""
        ...


@runtime_checkable
class KvSnapshots(Protocol):
    """A backend whose KV cache can be written out and read back (``store.snapshot``)."""

    def state_key(self) -> dict[str, object]:
        """What a saved state is only valid for (with the model file's sha256)."""
        ...

    def state_size(self) -> int: ...

    def export_state(self) -> tuple[list[int], bytes]: ...

    def import_state(self, tokens: list[int], state: bytes) -> bool: ...


@runtime_checkable
class PromptCaching(Protocol):
    """A backend that keeps prompts' cells across runs (``engine.promptcache``)."""

    def save_prompt_cache(self, keep_answer: bool = False) -> PromptWrite | None:
        """Write the first answer's prompt as an entry if it is worth one; the conversation's
        cells beyond it go, or with ``keep_answer`` stay and are written too (a chat's next
        turn needs them). Raises OSError where the disk refuses."""
        ...


class BatchEngine(Protocol):
    """Answers batch jobs, several at once; outcomes in finishing order."""

    @property
    def tokens_generated(self) -> int: ...

    def run(self, jobs: Iterator[BatchJob], cancel: Cancellation) -> Generator[BatchOutcome]: ...

    def save_prompt_cache(self) -> PromptWrite | None:
        """After a run: write the long prefix its first job shares with the others (or its
        whole prompt) to the prompt cache if it is worth an entry; None where there is no
        cache. Raises OSError where the disk refuses."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ParallelSlots(Protocol):
    """A backend that answers many prompts at once itself, as slots of one context."""

    def parallel_limit(self) -> int:
        """The most slots one context can have."""
        ...

    def default_parallel(self, cells_each: int) -> int:
        """How many slots of ``cells_each`` cells decode fastest together here."""
        ...

    def open_slots(self, parallel: int, cells_each: int) -> BatchEngine: ...


@runtime_checkable
class OwnFacts(Protocol):
    """A backend that says itself what produced an answer (a server: its URL and model)."""

    def facts(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Abilities:
    """The optional abilities of one backend; None where it lacks one."""

    snapshots: KvSnapshots | None = None
    slots: ParallelSlots | None = None
    facts: OwnFacts | None = None
    prompt_cache: PromptCaching | None = None
    media: Media | None = None
    media_facts: MediaFacts | None = None


def abilities(backend: Backend) -> Abilities:
    """What ``backend`` can do besides counting and answering."""
    media = backend if isinstance(backend, Media) else None
    media_facts = media.media_facts() if media is not None else None
    return Abilities(
        snapshots=backend if isinstance(backend, KvSnapshots) else None,
        slots=backend if isinstance(backend, ParallelSlots) else None,
        facts=backend if isinstance(backend, OwnFacts) else None,
        prompt_cache=backend if isinstance(backend, PromptCaching) else None,
        media=media if media_facts is not None else None,
        media_facts=media_facts,
    )

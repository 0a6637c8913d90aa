"""What a model name can stand for besides a path or an alias: a Hugging Face reference.

Both the resolver and the downloader need it; it lives below both so that
neither imports the other at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_HF_REF = re.compile(r"^(?:hf:|hf\.co/|huggingface\.co/)?([\w.-]+/[\w.-]+)(?::([\w.+-]+))?$")


@dataclass(frozen=True)
class HubRef:
    """A model on Hugging Face: a repository and a quantisation or file name."""

    repo: str
    selector: str | None = None

    def __str__(self) -> str:
        return f"{self.repo}:{self.selector}" if self.selector else self.repo


@dataclass(frozen=True)
class PullReport:
    """How a download on first use speaks: a note before it starts, a bar on a terminal."""

    note: Callable[[str], None]
    progress: bool = False


def parse_hub_ref(name: str) -> HubRef | None:
    if name.startswith(("/", "./", "../", "~")):
        return None
    match = _HF_REF.match(name.strip())
    if not match:
        return None
    repo, selector = match.group(1), match.group(2)
    if repo.lower().endswith(".gguf") and selector is None:
        return None  # dir/file.gguf is a relative path
    return HubRef(repo, selector)

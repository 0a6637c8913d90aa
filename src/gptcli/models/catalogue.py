"""Short names for well-known models, typed as in ollama: ``qwen3:4b``, ``gemma3``.

The table ships with gptcli (catalogue.toml beside this module). A name is
``FAMILY[:SIZE[-QUANT]]``: a bare family stands for its default size (also
``FAMILY:latest``), and a quantisation (``qwen3:4b-q8_0``) picks that file of the same
repository instead of the one the catalogue names.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from gptcli.errors import ModelError
from gptcli.models.names import HubRef
from gptcli.parsing import loads_toml

_QUANT = re.compile(r"^(?:i?q\d[a-z0-9_]*|f16|bf16|f32|mxfp4)$", re.IGNORECASE)
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*(?::[a-z0-9][a-z0-9._-]*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogueModel:
    """One short name: the file it stands for, its projector, and what the model takes."""

    family: str
    size_tag: str
    repo: str
    file: str
    size_mb: int | None = None
    projector: str | None = None
    projector_mb: int | None = None
    takes: tuple[str, ...] = ("text",)
    thinking: bool = False
    tools: bool = False
    default: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}:{self.size_tag}"

    @property
    def total_mb(self) -> int | None:
        if self.size_mb is None:
            return None
        return self.size_mb + (self.projector_mb or 0)


@dataclass(frozen=True)
class ShortName:
    """A short name resolved: a catalogue model and the quantisation asked for, if any."""

    model: CatalogueModel
    quant: str | None = None

    @property
    def ref(self) -> HubRef:
        """The hub reference it downloads: the catalogue's file, or the quantisation's."""
        return HubRef(self.model.repo, self.quant or self.model.file)

    def __str__(self) -> str:
        return f"{self.model.name}-{self.quant.lower()}" if self.quant else self.model.name


def _model(family: str, tag: str, facts: dict[str, Any], fields: dict[str, Any]) -> CatalogueModel:
    merged = {**facts, **fields}
    return CatalogueModel(
        family=family,
        size_tag=tag,
        repo=str(merged["repo"]),
        file=str(merged["file"]),
        size_mb=merged.get("size"),
        projector=merged.get("projector"),
        projector_mb=merged.get("projector_size"),
        takes=tuple(merged.get("takes", ("text",))),
        thinking=bool(merged.get("thinking", False)),
        tools=bool(merged.get("tools", False)),
        default=tag == facts.get("default"),
    )


@functools.cache
def catalogue() -> dict[str, CatalogueModel]:
    """Every short name in the shipped table, ``family:size`` to its model, in table order."""
    text = files("gptcli.models").joinpath("catalogue.toml").read_text(encoding="utf-8")
    models: dict[str, CatalogueModel] = {}
    for family, facts in loads_toml(text)["families"].items():
        shared = {k: v for k, v in facts.items() if k not in ("sizes", "default")}
        for tag, fields in facts["sizes"].items():
            model = _model(family, tag, {**shared, "default": facts.get("default")}, fields)
            models[model.name] = model
    return models


def families() -> dict[str, list[CatalogueModel]]:
    grouped: dict[str, list[CatalogueModel]] = {}
    for model in catalogue().values():
        grouped.setdefault(model.family, []).append(model)
    return grouped


def parse_short_name(name: str) -> ShortName | None:
    """The catalogue model ``name`` stands for; None when it is not a catalogue name.

    A known family with an unknown size or tag is an error that lists the sizes.
    """
    text = name.strip().lower()
    if not _NAME.match(text):
        return None
    family, _, tag = text.partition(":")
    members = families().get(family)
    if members is None:
        return None
    size, _, quant = tag.partition("-")
    if size in ("", "latest"):
        size = next(m.size_tag for m in members if m.default)
    model = catalogue().get(f"{family}:{size}")
    if model is None or (quant and not _QUANT.match(quant)):
        close = suggest(text, cutoff=0.9)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        sizes = ", ".join(m.size_tag for m in members)
        raise ModelError(
            f"unknown model {name!r}: {hint}{family} comes in {sizes} "
            f"(FAMILY:SIZE, optionally -QUANT as in {family}:{members[0].size_tag}-q8_0)"
        )
    return ShortName(model, quant.upper() or None)


def suggest(name: str, others: Iterable[str] = (), cutoff: float = 0.75) -> list[str]:
    """The catalogue name (or one of ``others``) closest to a name that matched nothing."""
    names = [*catalogue(), *families(), *others]
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.strip().lower(), list(lowered), n=1, cutoff=cutoff)
    return [lowered[c] for c in close]

"""Models the user registered or downloaded, kept in ``<data dir>/models.json``.

An entry maps an alias to a file, and to the file's projector (``mmproj``) when
the model sees images. Entries made by ``models pull`` are marked as downloaded:
only those files are deleted when their alias is removed. Registries written
before projectors were kept load as entries without one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gptcli.errors import UsageError
from gptcli.parsing import loads_json
from gptcli.paths import write_private_file

ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SCHEMA = 1


@dataclass(frozen=True)
class ModelEntry:
    """One registered model file."""

    alias: str
    path: str
    downloaded: bool = False
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None
    added: float = 0.0
    projector: str | None = None

    @property
    def projector_path(self) -> Path | None:
        """The projector file kept with this model, when there is one."""
        return Path(self.projector) if self.projector else None


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias):
        raise UsageError(
            f"invalid alias {alias!r}: use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return alias


class ModelRegistry:
    """The alias table on disk; every change is written atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "models.json"

    def load(self) -> dict[str, ModelEntry]:
        try:
            raw = loads_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UsageError(f"model registry {self.path} is unreadable: {exc}") from exc
        entries: dict[str, ModelEntry] = {}
        for alias, fields in (raw.get("models") or {}).items():
            if isinstance(fields, dict) and isinstance(fields.get("path"), str):
                known = {k: v for k, v in fields.items() if k in ModelEntry.__dataclass_fields__}
                if not isinstance(known.get("projector"), str):
                    known.pop("projector", None)  # absent in older files; junk if hand-edited
                entries[alias] = ModelEntry(**{**known, "alias": alias})
        return entries

    def _save(self, entries: dict[str, ModelEntry]) -> None:
        body = {
            "schema": SCHEMA,
            "models": {
                alias: {k: v for k, v in asdict(e).items() if k != "alias"}
                for alias, e in sorted(entries.items())
            },
        }
        write_private_file(self.path, (json.dumps(body, indent=1) + "\n").encode())

    def get(self, alias: str) -> ModelEntry | None:
        return self.load().get(alias)

    def put(self, entry: ModelEntry) -> None:
        entries = self.load()
        entries[entry.alias] = ModelEntry(**{**asdict(entry), "added": entry.added or time.time()})
        self._save(entries)

    def entry_for(self, path: Path) -> ModelEntry | None:
        """The entry whose model file is ``path`` (how a resolved file finds its projector)."""
        wanted = path.resolve()
        for entry in self.load().values():
            if Path(entry.path).resolve() == wanted:
                return entry
        return None

    def projector_users(self, projector: str) -> list[str]:
        """Aliases whose entry keeps ``projector``: it is deleted only when none is left."""
        wanted = Path(projector).resolve()
        return [
            e.alias
            for e in self.load().values()
            if e.projector and Path(e.projector).resolve() == wanted
        ]

    def remove(self, alias: str) -> ModelEntry | None:
        entries = self.load()
        entry = entries.pop(alias, None)
        if entry is not None:
            self._save(entries)
        return entry


def file_sha256(path: Path, cache_dir: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime) and cached."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = cache_dir / "sha256.json"
    try:
        cache: dict[str, Any] = loads_json(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), str):
        return str(cache[key])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache costs a recomputation next time
        write_private_file(cache_file, json.dumps(cache, indent=1).encode())
    return digest.hexdigest()

"""Where gptcli keeps its files, and how it writes them.

``GPTCLI_HOME`` moves all of them under one directory (``config/``, ``data/``,
``cache/``); otherwise the platform's conventions apply via platformdirs.
Nothing is created here: callers create what they write, with private modes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gptcli.errors import UsageError

APP_NAME = "gptcli"


@dataclass(frozen=True)
class AppPaths:
    """The three directories gptcli uses, resolved once per invocation."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"


def app_paths(environ: os._Environ[str] | dict[str, str] | None = None) -> AppPaths:
    env = os.environ if environ is None else environ
    home = env.get("GPTCLI_HOME")
    if home:
        root = Path(home).expanduser()
        return AppPaths(root / "config", root / "data", root / "cache")
    import platformdirs

    return AppPaths(
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.user_data_dir(APP_NAME)),
        Path(platformdirs.user_cache_dir(APP_NAME)),
    )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents, each readable only by the user."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``: temp file, fsync, rename; mode 0600."""
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def cannot_write(path: Path, exc: OSError) -> UsageError:
    """The one line for an output file (``-o``) that cannot be written (exit 2)."""
    return UsageError(f"cannot write {path}: {exc.strerror or exc}")


def write_output_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a file the user named, as a shell's ``>`` does: created (mode 0600)
    or truncated in place, so a device or FIFO is written to rather than replaced; a missing
    folder is refused, not created. UsageError (:func:`cannot_write`) for what cannot be."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise cannot_write(path, exc) from None

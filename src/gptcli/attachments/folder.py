"""A folder as text: its text files, .gitignore respected, binaries and specials skipped.

Files are taken in path order until a cap (files or bytes) is reached; what was
taken and what was skipped, with why, is reported so the caller can list it. Symbolic
links are never followed (no loops, nothing outside the folder), and only regular
files are opened (never a FIFO or a device that would be read forever).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gptcli.attachments.kinds import SNIFF_BYTES, sniff
from gptcli.attachments.limits import Limits

if TYPE_CHECKING:
    import pathspec

ALWAYS_SKIPPED = frozenset({".git", ".hg", ".svn"})


@dataclass
class FolderText:
    """What a folder gave: its files' text, each under a header, and the lists to show."""

    text: str = ""
    taken: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    ignored: int = 0  # paths .gitignore excluded (not listed one by one)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.taken)


@dataclass
class _Ignores:
    """The .gitignore files met on the way down, each matching paths under its folder."""

    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = field(default_factory=list)

    def add(self, folder: str, lines: list[str]) -> None:
        import pathspec

        self.specs.append((folder, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(self, relative: str, is_dir: bool) -> bool:
        for folder, spec in self.specs:
            if folder and not relative.startswith(folder + "/"):
                continue
            inner = relative[len(folder) + 1 :] if folder else relative
            if spec.match_file(inner + "/" if is_dir else inner):
                return True
        return False

    def pop_below(self, folder: str) -> None:
        """Forget the specs of folders that are not ``folder`` or above it (walk order)."""
        self.specs = [
            (f, s) for f, s in self.specs if not f or folder == f or folder.startswith(f + "/")
        ]


def _entries(root: Path, ignores: _Ignores, found: FolderText) -> Iterator[tuple[str, Path]]:
    """Every file under ``root`` that .gitignore keeps, in path order, depth first."""

    def walk(folder: Path, relative: str) -> Iterator[tuple[str, Path]]:
        ignores.pop_below(relative)
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            found.skipped.append((relative or ".", f"unreadable ({exc.strerror})"))
            return
        if ".gitignore" in names:
            try:
                lines = (folder / ".gitignore").read_text("utf-8", "replace").splitlines()
                ignores.add(relative, lines)
            except OSError:
                pass
        for name in names:
            path = folder / name
            inner = f"{relative}/{name}" if relative else name
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                found.skipped.append((inner, f"unreadable ({exc.strerror})"))
                continue
            if stat.S_ISDIR(mode):
                if name in ALWAYS_SKIPPED or ignores.ignored(inner, True):
                    found.ignored += 1
                    continue
                yield from walk(path, inner)
                ignores.pop_below(relative)
            elif ignores.ignored(inner, False):
                found.ignored += 1
            else:
                yield inner, path

    yield from walk(root, "")


def read_folder(
    root: Path, limits: Limits, decode: Callable[[bytes, str], str], label: str
) -> FolderText:
    """The text files under ``root``, under headers ``label/relative path``."""
    found = FolderText()
    blocks: list[str] = []
    seen = 0
    for relative, path in _entries(root, _Ignores(), found):
        seen += 1
        if seen > limits.folder_entries:
            found.skipped.append((relative, f"over the cap of {limits.folder_entries} entries"))
            break
        why, data = _take(path, limits, found.size)
        if why is None and len(found.taken) >= limits.folder_files:
            why = f"over the cap of {limits.folder_files} files"
        if why is not None:
            found.skipped.append((relative, why))
            continue
        assert data is not None
        name = f"{label}/{relative}"
        text = decode(data, name).rstrip()
        blocks.append(f"=== {name} ===\n{text}")
        found.taken.append((relative, len(data)))
    found.text = "\n\n".join(blocks)
    return found


def _take(path: Path, limits: Limits, total: int) -> tuple[str | None, bytes | None]:
    """(why it is skipped, None) or (None, its bytes)."""
    try:
        info = path.lstat()
    except OSError as exc:
        return f"unreadable ({exc.strerror})", None
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link", None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file", None
    if total + info.st_size > limits.folder_bytes:
        return f"over the cap of {limits.folder_bytes:,} bytes in all", None
    try:
        # O_NOFOLLOW and a size read no further than the cap: a file swapped for a
        # link or grown since the look above changes nothing.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limits.folder_bytes - total + 1)
    except OSError as exc:
        return f"unreadable ({exc.strerror})", None
    if total + len(data) > limits.folder_bytes:
        return f"over the cap of {limits.folder_bytes:,} bytes in all", None
    kind = sniff(data[:SNIFF_BYTES])
    if kind.kind != "text" or (not kind.format and b"\0" in data):
        return f"not text ({kind.format or 'binary data'})", None
    return None, data

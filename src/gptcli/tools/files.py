"""The ``read_file`` and ``list_dir`` tools: reading text inside the current directory and roots."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gptcli.engine.base import ToolSpec
from gptcli.tools.base import BUILT_IN, ToolOutput, failure

MAX_FILE_BYTES = 1_000_000  # read at most this much of a file; the result cap applies after
MAX_ENTRIES = 500


class OutsideRoots(ValueError):
    """A path that resolves outside every directory the tools may read."""


def allowed_roots(extra: Sequence[Path]) -> tuple[Path, ...]:
    """The current directory and the configured roots, resolved now."""
    return (Path.cwd().resolve(), *(Path(root).expanduser().resolve() for root in extra))


def contained(path: str, roots: Sequence[Path]) -> Path:
    """``path`` resolved (symlinks, ``..``) against the current directory, if inside a root.

    Resolving first means a link inside a root that points outside is judged by its target.
    """
    target = (Path.cwd() / Path(path).expanduser()).resolve(strict=True)
    if not any(target == root or target.is_relative_to(root) for root in roots):
        shown = ", ".join(str(root) for root in roots)
        raise OutsideRoots(f"{path} is outside the directories tools may read ({shown})")
    return target


def _open_text(path: Path) -> tuple[str, int]:
    """The file's text (at most MAX_FILE_BYTES of it) and its size in bytes."""
    # O_NONBLOCK: a FIFO someone named must not hang the call; it is refused below anyway.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = handle.read(MAX_FILE_BYTES)
    if b"\0" in data:
        raise ValueError(f"{path} is a binary file, not text")
    # A file cut at MAX_FILE_BYTES may end inside a character: not final, so that is no error.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=len(data) >= info.st_size)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    return text, info.st_size


class ReadFileTool:
    """Reads a UTF-8 text file inside the current directory or a configured root."""

    read_only = True
    source = BUILT_IN

    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(roots)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(
            name="read_file",
            description=(
                "Read a UTF-8 text file in the current directory (or a configured root), "
                "optionally only some of its lines. Binary files are refused."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Relative or absolute file path."},
                    "start_line": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "First line to return (1-based); default 1.",
                    },
                    "end_line": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Last line to return, inclusive; default the last.",
                    },
                },
                "required": ["path"],
                "additionalProperties": False,
            },
        )

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        name = str(arguments["path"])
        try:
            text, size = _open_text(contained(name, allowed_roots(self._roots)))
        except FileNotFoundError:
            return failure(f"{name}: no such file")
        except OSError as exc:
            return failure(f"{name}: {exc.strerror or exc}")
        except ValueError as exc:
            return failure(str(exc))
        start, end = arguments.get("start_line"), arguments.get("end_line")
        if start is not None or end is not None:
            lines = text.splitlines(keepends=True)
            first = int(start or 1)
            last = min(int(end or len(lines)), len(lines))
            if first > len(lines) or first > last:
                return failure(f"{name} has {len(lines)} lines; asked for {first}-{last}")
            text = "".join(lines[first - 1 : last])
        elif size > MAX_FILE_BYTES:
            note = f"\n[truncated: showed the first {MAX_FILE_BYTES} of {size} bytes]"
            return ToolOutput(text + note, truncated=True)
        return ToolOutput(text)


def _describe(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return f"link  {entry.name} -> {os.readlink(entry.path)}"
        if entry.is_dir():
            return f"dir   {entry.name}/"
        if entry.is_file():
            return f"file  {entry.name} ({entry.stat().st_size} bytes)"
    except OSError:
        pass
    return f"other {entry.name}"


class ListDirTool:
    """Lists a directory inside the current directory or a configured root."""

    read_only = True
    source = BUILT_IN

    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(roots)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(
            name="list_dir",
            description=(
                "List the entries of a directory in the current directory (or a configured "
                "root): each with its type (file, dir, link) and a file's size in bytes."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "Directory path; default the current directory.",
                    }
                },
                "required": [],
                "additionalProperties": False,
            },
        )

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        name = str(arguments.get("path") or ".")
        try:
            directory = contained(name, allowed_roots(self._roots))
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except FileNotFoundError:
            return failure(f"{name}: no such directory")
        except NotADirectoryError:
            return failure(f"{name} is not a directory")
        except OSError as exc:
            return failure(f"{name}: {exc.strerror or exc}")
        except ValueError as exc:
            return failure(str(exc))
        lines = [_describe(entry) for entry in entries[:MAX_ENTRIES]]
        if not entries:
            return ToolOutput(f"{name} is empty")
        if len(entries) > MAX_ENTRIES:
            note = f"[truncated: showed {MAX_ENTRIES} of {len(entries)} entries]"
            return ToolOutput("\n".join([*lines, note]), truncated=True)
        return ToolOutput("\n".join(lines))

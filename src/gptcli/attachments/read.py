"""One attachment from what the user named: a file, a folder, a URL or stdin's bytes."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from gptcli.attachments.attached import Attached, AttachmentError
from gptcli.attachments.content import from_bytes
from gptcli.attachments.limits import DEFAULT_LIMITS, Limits
from gptcli.attachments.text import decode_text
from gptcli.wording import plural

Note = Callable[[str], None]
STDIN = "-"
LISTED = 20  # taken files named in the note on a folder


def is_url(source: str) -> bool:
    return "://" in source and source.split("://", 1)[0].isalpha()


def read_attachment(
    source: str,
    note: Note,
    limits: Limits = DEFAULT_LIMITS,
    stdin: BinaryIO | None = None,
) -> Attached:
    """Read ``source`` (a path, ``http(s)://`` URL, or ``-`` for ``stdin``) as an attachment.

    Raises AttachmentError (exit 2) with one line for anything that cannot be attached:
    empty, missing, unreadable, binary, over a cap, an image or audio (no projector here).
    """
    if not source:
        # Path("") is the current directory: an unset shell variable (-a "$FILE") would
        # attach every text file under it without a word.
        raise AttachmentError("an empty path cannot be attached (an unset shell variable?)")
    start = time.perf_counter()
    if source == STDIN:
        if stdin is None:
            raise AttachmentError("-a - reads stdin, but stdin is a terminal or closed")
        data = _read_capped(stdin, "stdin", limits.file_bytes)
        attached = from_bytes(data, "stdin", note, limits)
    elif is_url(source):
        from gptcli.attachments.web import read_url

        attached = read_url(source, note, limits)
    else:
        attached = _read_path(Path(source).expanduser(), source, note, limits)
    return replace(attached, seconds=time.perf_counter() - start)


def _read_path(path: Path, shown: str, note: Note, limits: Limits) -> Attached:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AttachmentError(f"file not found: {shown}") from None
    except OSError as exc:
        raise AttachmentError(f"cannot read {shown}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        return _read_folder(path, shown, note, limits)
    if not stat.S_ISREG(info.st_mode):
        raise AttachmentError(f"{shown} is not a regular file (a FIFO or device is not read)")
    if info.st_size > limits.file_bytes:
        raise AttachmentError(
            f"{shown} is {info.st_size:,} bytes, over the cap of {limits.file_bytes:,} for one "
            "attachment"
        )
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            data = _read_capped(handle, shown, limits.file_bytes)
    except OSError as exc:
        raise AttachmentError(f"cannot read {shown}: {exc.strerror}") from None
    return from_bytes(data, path.name, note, limits)


def _read_capped(stream: BinaryIO, name: str, cap: int) -> bytes:
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise AttachmentError(f"{name} is over the cap of {cap:,} bytes for one attachment")
    return data


def _read_folder(path: Path, shown: str, note: Note, limits: Limits) -> Attached:
    from gptcli.attachments.folder import read_folder

    label = path.resolve().name or shown
    found = read_folder(path, limits, lambda data, name: decode_text(data, name, note), label)
    for relative, why in found.skipped:
        note(f"{label}/{relative}: skipped, {why}")
    ignored = f", {found.ignored} ignored by .gitignore" if found.ignored else ""
    names = [relative for relative, _ in found.taken]
    listed = ", ".join(names[:LISTED]) + (
        f" and {len(names) - LISTED} more" if names[LISTED:] else ""
    )
    # The taken files' names follow "took": the skipped ones each had a note of their own.
    note(
        f"{label}/: took {plural(len(names), 'text file')} ({found.size:,} bytes)"
        + (f": {listed}" if names else "")
        + f"; skipped {len(found.skipped)}{ignored}"
    )
    if not found.taken:
        raise AttachmentError(f"{shown} has no text files to attach")
    return Attached("folder", f"{label}/", found.text)

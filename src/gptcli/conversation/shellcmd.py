"""`gptcli cmd`: a request in words becomes one shell command, run only on explicit choice."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# (pattern, why it is dangerous)
_DESTRUCTIVE = [
    (r"\brm\s+(-[a-zA-Z]*[rf][a-zA-Z]*\s+)+", "removes files recursively or by force"),
    (r"\bsudo\b|\bdoas\b", "runs with administrator rights"),
    (r"\bdd\b\s+.*\bof=", "writes raw data to a file or device"),
    (r"\bmkfs(\.\w+)?\b", "formats a file system"),
    (r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|k|da)?sh\b", "runs a script from the network"),
    (r"\bchmod\s+(-R\s+)?[0-7]*7{2,}\b|\bchown\s+-R\b", "changes permissions broadly"),
    (r":\(\)\s*\{.*\};\s*:", "is a fork bomb"),
    (r"\b(shutdown|reboot|halt|poweroff)\b", "stops the machine"),
    (r"\bgit\s+(push\s+.*--force|reset\s+--hard|clean\s+-[a-z]*f)", "discards work in git"),
    (r">\s*/dev/(sd|nvme|hd)", "overwrites a disk"),
]


def detect_shell() -> tuple[str, str]:
    """The user's shell: (name, path)."""
    path = os.environ.get("SHELL") or "/bin/sh"
    return Path(path).name, path


def os_description() -> str:
    system = platform.system() or "Unix"
    if system == "Linux":
        try:
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    return f"Linux ({line.split('=', 1)[1].strip().strip(chr(34))})"
        except OSError:
            pass
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    return system


def clean_command(text: str) -> str:
    """The command in a model's answer: fences, prompts and commentary removed."""
    body = text.strip()
    fenced = re.search(r"```[a-zA-Z]*\n(.*?)(```|$)", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    for line in body.splitlines():
        command = line.strip().strip("`").strip()
        if command.startswith("$ "):
            command = command[2:].strip()
        if command and not command.startswith("#"):
            return command
    return ""


def warnings_for(command: str, cwd: Path | None = None) -> list[str]:
    """Why running ``command`` could do harm; empty when nothing obvious stands out."""
    found = [why for pattern, why in _DESTRUCTIVE if re.search(pattern, command)]
    for target in re.findall(r"(?<![>&0-9])>\s*([^\s|;&>]+)", command):
        path = (cwd or Path.cwd()) / Path(target).expanduser()
        if target.startswith("/dev/null"):
            continue
        if path.exists():
            found.append(f"overwrites the existing file {target}")
    return found

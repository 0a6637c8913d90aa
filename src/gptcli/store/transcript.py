"""Sessions as documents: a Markdown transcript and a JSON export."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from gptcli.store.sessions import Session


def to_markdown(session: Session) -> str:
    lines = [f"# {session.title or session.name}", ""]
    if session.system:
        lines += ["**System:** " + session.system, ""]
    for message in session.messages:
        if message.role == "user":
            lines += ["## You", "", *_attachment_lines(message.attachments), message.content, ""]
            continue
        if message.role == "tool":
            fence = "~~~~" if "~~~" in message.content else "~~~"
            lines += [
                f"Result of {message.name or 'a tool'}:",
                "",
                fence,
                message.content,
                fence,
                "",
            ]
            continue
        if message.tool_calls:
            calls = [f"- calls `{c['name']}` with `{c['arguments']}`" for c in message.tool_calls]
            lines += [message.content, ""] if message.content else []
            lines += [*calls, ""]
            continue
        model = (message.model or {}).get("name", "model")
        mark = " (interrupted)" if message.finish_reason == "interrupted" else ""
        lines += [f"## {model}{mark}", "", message.content, ""]
        for number, alternative in enumerate(message.alternatives, 1):
            lines += [f"### Earlier answer {number}", "", str(alternative.get("content", "")), ""]
    return "\n".join(lines).rstrip() + "\n"


def _attachment_lines(attachments: list[dict[str, Any]] | None) -> list[str]:
    """One line per attachment of a message: its name, kind, size and stored copy."""
    if not attachments:
        return []
    return [
        f"- attached `{a['name']}` ({a['kind']}, {a['bytes']:,} bytes, sha256 "
        f"{str(a['sha256'])[:12]})"
        for a in attachments
    ] + [""]


def _fence(text: str) -> str:
    """A code fence no line of ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"~+", text)), default=0)
    return "~" * max(3, longest + 1)


def to_json(session: Session) -> str:
    body = {
        "schema": session.schema,
        "name": session.name,
        "title": session.title,
        "system": session.system,
        "created": session.created,
        "updated": session.updated,
        "messages": [asdict(m) for m in session.messages],
    }
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n"

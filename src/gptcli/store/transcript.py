"""Sessions as documents: a Markdown transcript and a JSON export."""

from __future__ import annotations

import json
from dataclasses import asdict

from gptcli.store.sessions import Session


def to_markdown(session: Session) -> str:
    lines = [f"# {session.title or session.name}", ""]
    if session.system:
        lines += ["**System:** " + session.system, ""]
    for message in session.messages:
        if message.role == "user":
            lines += ["## You", "", message.content, ""]
            continue
        model = (message.model or {}).get("name", "model")
        mark = " (interrupted)" if message.finish_reason == "interrupted" else ""
        lines += [f"## {model}{mark}", "", message.content, ""]
        for number, alternative in enumerate(message.alternatives, 1):
            lines += [f"### Earlier answer {number}", "", str(alternative.get("content", "")), ""]
    return "\n".join(lines).rstrip() + "\n"


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

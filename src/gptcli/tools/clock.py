"""The ``time`` tool: the current date, time, weekday and time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gptcli.engine.base import ToolSpec
from gptcli.tools.base import BUILT_IN, ToolOutput, failure


def describe_now(zone: str | None = None) -> str:
    """Now, in the local time zone or the named IANA zone; raises ValueError for an unknown zone."""
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            now = datetime.now(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            hint = "use an IANA name like Europe/Paris"
            raise ValueError(f"unknown time zone {zone!r} ({hint})") from None
    else:
        now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return (
        f"{now:%Y-%m-%d %H:%M:%S}, {now:%A}, time zone {zone or now.tzname()} "
        f"(UTC{offset[:3]}:{offset[3:]}); ISO 8601: {now.isoformat(timespec='seconds')}"
    )


class TimeTool:
    """Tells the current date, time, weekday and time zone."""

    read_only = True
    source = BUILT_IN
    spec = ToolSpec(
        name="time",
        description=(
            "Get the current date, time, weekday and time zone, locally or in a named "
            "IANA time zone."
        ),
        parameters={
            "type": "object",
            "properties": {
                "zone": {
                    "type": "string",
                    "description": "An IANA time zone such as Europe/Paris; default the local one.",
                }
            },
            "required": [],
            "additionalProperties": False,
        },
    )

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        try:
            return ToolOutput(describe_now(arguments.get("zone")))
        except ValueError as exc:
            return failure(str(exc))

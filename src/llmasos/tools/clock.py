"""``time_now`` and ``time_convert``: the current time and time-zone arithmetic.

Zones are IANA names read with `zoneinfo` (``Europe/Paris``, ``America/New_York``, ``UTC``);
an unknown zone or an unreadable time is a `ToolError` that says what to send instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec

ZONE = {"type": "string", "maxLength": 64, "description": "IANA time zone, e.g. Europe/Paris"}


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Paris, "
            "America/New_York or UTC",
            code="invalid_timezone",
        ) from None


def described(moment: datetime) -> dict[str, Any]:
    return {
        "iso": moment.isoformat(timespec="seconds"),
        "timezone": str(moment.tzinfo),
        "utc_offset": moment.strftime("%z"),
        "weekday": moment.strftime("%A"),
    }


class TimeNow(Tool):
    spec = ToolSpec(
        name="time_now",
        description="The current date and time in a time zone (default UTC).",
        parameters={
            "type": "object",
            "properties": {"timezone": ZONE},
            "additionalProperties": False,
        },
        permission="tasks",
        group="time",
        timeout_s=5.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        where = zone(arguments.get("timezone") or "UTC")
        return ToolResult(described(datetime.now(UTC).astimezone(where)))


class TimeConvert(Tool):
    spec = ToolSpec(
        name="time_convert",
        description="Convert a date and time from one time zone to another, optionally "
        "adding hours or days.",
        parameters={
            "type": "object",
            "properties": {
                "time": {"type": "string", "description": "ISO time, e.g. 2026-03-01T09:30"},
                "from_timezone": ZONE,
                "to_timezone": ZONE,
                "add_hours": {"type": "number"},
                "add_days": {"type": "number"},
            },
            "required": ["time", "to_timezone"],
            "additionalProperties": False,
        },
        permission="tasks",
        group="time",
        timeout_s=5.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        try:
            moment = datetime.fromisoformat(arguments["time"])
        except ValueError:
            raise ToolError(
                f"cannot read the time {arguments['time'][:40]!r}; use ISO 8601 like "
                "2026-03-01T09:30",
                code="invalid_time",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone(arguments.get("from_timezone") or "UTC"))
        try:
            moment += timedelta(
                hours=arguments.get("add_hours", 0), days=arguments.get("add_days", 0)
            )
        except OverflowError:
            raise ToolError("the resulting time is out of range", code="invalid_time") from None
        return ToolResult(described(moment.astimezone(zone(arguments["to_timezone"]))))


time_now = TimeNow()
time_convert = TimeConvert()

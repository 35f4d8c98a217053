"""Cron schedules: five fields (minute hour day-of-month month day-of-week), UTC.

Each field is ``*``, a number, a range ``a-b``, a list ``a,b`` or a step ``*/n`` / ``a-b/n``.
`parse_cron` checks an expression (a `WorkflowError` naming the bad field); `due` says whether
a minute matches. The server's scheduler wakes once a minute and starts each due workflow
once per minute (the run's idempotency key is the minute, so two servers start it once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from llmasos.workflows.errors import WorkflowError

FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, last = body.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = end = int(body)
        except ValueError:
            raise WorkflowError(f"schedule: bad {name} field {text!r}") from None
        if step < 1 or not low <= start <= end <= high:
            raise WorkflowError(f"schedule: {name} must be within {low}-{high} (got {text!r})")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> tuple[frozenset[int], ...]:
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise WorkflowError(
            f"schedule: {expression!r} needs 5 fields (minute hour day month weekday)"
        )
    return tuple(
        _field(part, name, low, high) for part, (name, low, high) in zip(parts, FIELDS, strict=True)
    )


def due(expression: str, moment: datetime) -> bool:
    """Whether ``moment`` (UTC, to the minute) matches the schedule."""
    minute, hour, day, month, weekday = parse_cron(expression)
    return (
        moment.minute in minute
        and moment.hour in hour
        and moment.day in day
        and moment.month in month
        and (moment.isoweekday() % 7) in weekday
    )

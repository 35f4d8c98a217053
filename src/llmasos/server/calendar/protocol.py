"""Request models of ``/v1/calendar/events`` and ``/v1/reminders``. Times are ISO 8601; a
time without an offset is read in ``time_zone`` (an IANA name, default UTC). Events come
back as ``{"id": "evt_…", "object": "calendar.event", "uid", "title", "start", "end",
"time_zone", "all_day", "location", "notes", "created_at", "updated_at"}``, reminders as
``{"id": "rem_…", "object": "reminder", "text", "due", "due_at", "time_zone", "status",
"event_id", "created_at", "fired_at"}``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EventCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    start: str
    end: str | None = None
    time_zone: str | None = None
    location: str | None = None
    notes: str | None = None
    all_day: bool = False
    remind_minutes_before: float | None = None


class ReminderCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    due: str | None = None
    in_seconds: float | None = None
    time_zone: str | None = None

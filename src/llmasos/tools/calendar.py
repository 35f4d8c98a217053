"""Calendar events, their iCalendar import and export, and the calendar tools.

An event has a title, a start and an end (instants; given as ISO 8601, a time without an
offset is read in the event's IANA time zone and shown in it), a location and notes (sealed
with the content cipher), and an iCalendar UID: importing an ``.ics`` file (``icalendar``)
adds its events and updates those whose UID is already there, so importing twice changes
nothing. An event made with ``remind_minutes_before`` gets a reminder that fires then and
goes when the event goes. The tools ``calendar_create_event``, ``calendar_list_events`` and
``calendar_delete_event`` (permission ``calendar``) call `CalendarStore`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, PayloadTooLargeError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import CalendarEvent
from llmasos.tools.records import (
    Owner,
    RowIds,
    Sealed,
    check_text,
    epoch,
    instant,
    local_iso,
    now,
    once,
    zone,
)
from llmasos.tools.reminders import ReminderStore

EVENT_IDS: Final = RowIds("evt", "event")
MAX_TITLE_CHARS: Final = 300
MAX_NOTES_CHARS: Final = 10_000
MAX_ICS_BYTES: Final = 10 * 2**20
MAX_EVENT_DAYS: Final = 366
PRODID: Final = "-//LLMasOS//calendar//EN"
MAX_REMIND_MINUTES: Final = 525_600
"""The earliest reminder an event may have: a year before it."""


class CalendarStore:
    """Events of every owner in one database."""

    def __init__(self, database: Database, cipher: ContentCipher, reminders: ReminderStore):
        self.database = database
        self.cipher = cipher
        self.sealed = Sealed(cipher, "calendar_events")
        self.reminders = reminders

    def to_dict(self, row: CalendarEvent) -> dict[str, Any]:
        data = self.sealed.open(row.id, row.content)
        return {
            "id": EVENT_IDS.format(row.id),
            "object": "calendar.event",
            "uid": row.uid,
            "title": data.get("title", ""),
            "start": local_iso(row.start_at, row.time_zone),
            "end": local_iso(row.end_at, row.time_zone),
            "time_zone": row.time_zone,
            "all_day": row.all_day,
            "location": data.get("location", ""),
            "notes": data.get("notes", ""),
            "created_at": epoch(row.created_at),
            "updated_at": epoch(row.updated_at),
        }

    def _row(self, session: Session, owner: Owner, event_id: str) -> CalendarEvent:
        row = session.get(CalendarEvent, EVENT_IDS.parse(event_id))
        if row is None or row.owner != owner.key:
            raise EVENT_IDS.missing(event_id)
        return row

    def create(
        self,
        owner: Owner,
        title: str,
        start: Any,
        *,
        end: Any = None,
        time_zone: str | None = None,
        location: str | None = None,
        notes: str | None = None,
        all_day: bool = False,
        remind_minutes_before: float | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A new event (end defaults to an hour after start, a day for all-day events)."""
        tz = zone(time_zone)
        data = {
            "title": check_text(title, "title", MAX_TITLE_CHARS),
            "location": check_text(location, "location", MAX_TITLE_CHARS, required=False),
            "notes": check_text(notes, "notes", MAX_NOTES_CHARS, required=False),
        }
        start_at = instant(start, tz, "start")
        default_length = timedelta(days=1) if all_day else timedelta(hours=1)
        end_at = start_at + default_length if end is None else instant(end, tz, "end")
        check_span(start_at, end_at)
        reminder_at = None
        if remind_minutes_before is not None:
            if (
                not isinstance(remind_minutes_before, int | float)
                or not 0 <= remind_minutes_before <= MAX_REMIND_MINUTES
            ):
                raise InvalidRequestError(
                    "remind_minutes_before: must be a number of minutes from 0 to "
                    f"{MAX_REMIND_MINUTES:,} (a year)",
                    param="remind_minutes_before",
                )
            reminder_at = start_at - timedelta(minutes=float(remind_minutes_before))
            if reminder_at <= now():
                raise InvalidRequestError(
                    f"remind_minutes_before: the reminder would be at "
                    f"{reminder_at.astimezone(tz).isoformat()}, which is in the past",
                    param="remind_minutes_before",
                    code="time_in_past",
                )

        def act(session: Session) -> dict[str, Any]:
            row = self._insert(session, owner, f"{uuid.uuid4()}@llmasos", data, tz.key)
            row.start_at, row.end_at, row.all_day = start_at, end_at, bool(all_day)
            event = self.to_dict(row)
            if reminder_at is not None:
                reminder = self.reminders.new_row(
                    session, owner, data["title"], reminder_at, tz.key, event_id=row.id
                )
                event["reminder_id"] = f"rem_{reminder.id}"
            return event

        result, _ = once(self.database, self.cipher, owner, idempotency_key, "calendar", act)
        if reminder_at is not None:
            self.reminders.changed()
        return result

    def _insert(
        self, session: Session, owner: Owner, uid: str, data: dict[str, Any], tz_name: str
    ) -> CalendarEvent:
        moment = now()
        row = CalendarEvent(
            owner=owner.key,
            user_id=owner.user_id,
            uid=uid[:255],
            start_at=moment,
            end_at=moment,
            time_zone=tz_name,
            all_day=False,
            content=b"",
            created_at=moment,
            updated_at=moment,
        )
        session.add(row)
        session.flush()
        row.content = self.sealed.seal(row.id, data)
        return row

    def list_events(
        self,
        owner: Owner,
        *,
        start: Any = None,
        end: Any = None,
        time_zone: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events that overlap [start, end) (either may be open), by start time."""
        tz = zone(time_zone)
        statement = select(CalendarEvent).where(CalendarEvent.owner == owner.key)
        if start is not None:
            statement = statement.where(CalendarEvent.end_at > instant(start, tz, "start"))
        if end is not None:
            statement = statement.where(CalendarEvent.start_at < instant(end, tz, "end"))
        statement = statement.order_by(CalendarEvent.start_at, CalendarEvent.id)
        statement = statement.limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self.to_dict(row) for row in session.scalars(statement)]

    def get(self, owner: Owner, event_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            return self.to_dict(self._row(session, owner, event_id))

    def delete(
        self, owner: Owner, event_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        def act(session: Session) -> dict[str, Any]:
            row = self._row(session, owner, event_id)
            title = self.sealed.open(row.id, row.content).get("title", "")
            session.delete(row)
            return {
                "id": event_id,
                "object": "calendar.event.deleted",
                "deleted": True,
                "title": title,
            }

        result, _ = once(self.database, self.cipher, owner, idempotency_key, "calendar", act)
        return result

    # --- iCalendar -------------------------------------------------------------------------

    def export_ics(self, owner: Owner) -> bytes:
        """Every event of the owner as one iCalendar file."""
        from icalendar import Calendar, Event

        calendar = Calendar()
        calendar.add("prodid", PRODID)
        calendar.add("version", "2.0")
        with self.database.session() as session:
            rows = list(
                session.scalars(
                    select(CalendarEvent)
                    .where(CalendarEvent.owner == owner.key)
                    .order_by(CalendarEvent.start_at)
                )
            )
            for row in rows:
                data = self.sealed.open(row.id, row.content)
                tz = zone(row.time_zone)
                event = Event()
                event.add("uid", row.uid)
                event.add("dtstamp", row.updated_at)
                event.add("summary", data.get("title", ""))
                if row.all_day:
                    event.add("dtstart", row.start_at.astimezone(tz).date())
                    event.add("dtend", row.end_at.astimezone(tz).date())
                else:
                    event.add("dtstart", row.start_at.astimezone(tz))
                    event.add("dtend", row.end_at.astimezone(tz))
                if data.get("location"):
                    event.add("location", data["location"])
                if data.get("notes"):
                    event.add("description", data["notes"])
                calendar.add_component(event)
        add_timezones = getattr(calendar, "add_missing_timezones", None)
        if add_timezones is not None:
            add_timezones()
        return bytes(calendar.to_ical())

    def import_ics(self, owner: Owner, data: bytes) -> dict[str, Any]:
        """Add the file's events; one whose UID is already the owner's is updated."""
        from icalendar import Calendar

        if len(data) > MAX_ICS_BYTES:
            raise PayloadTooLargeError(f"the calendar file is over {MAX_ICS_BYTES} bytes")
        try:
            calendar = Calendar.from_ical(data)
            parsed = [_event_fields(component) for component in calendar.walk("VEVENT")]
        except InvalidRequestError:
            raise
        except Exception as error:  # icalendar raises ValueError and friends on bad input
            raise InvalidRequestError(
                f"not an iCalendar file: {str(error)[:200] or type(error).__name__}",
                param="file",
                code="invalid_ics",
            ) from None
        created = updated = 0
        ids: list[str] = []
        with self.database.session(write=True) as session:
            for fields in parsed:
                row = session.scalar(
                    select(CalendarEvent).where(
                        CalendarEvent.owner == owner.key, CalendarEvent.uid == fields["uid"]
                    )
                )
                content = {key: fields[key] for key in ("title", "location", "notes")}
                if row is None:
                    row = self._insert(session, owner, fields["uid"], content, fields["tz"])
                    created += 1
                else:
                    row.content = self.sealed.seal(row.id, content)
                    row.time_zone = fields["tz"]
                    row.updated_at = now()
                    updated += 1
                row.start_at, row.end_at = fields["start"], fields["end"]
                row.all_day = fields["all_day"]
                ids.append(EVENT_IDS.format(row.id))
        return {"object": "calendar.import", "created": created, "updated": updated, "ids": ids}


def check_span(start_at: datetime, end_at: datetime) -> None:
    if end_at < start_at:
        raise InvalidRequestError("end: must not be before start", param="end")
    if end_at - start_at > timedelta(days=MAX_EVENT_DAYS):
        raise InvalidRequestError(f"end: an event lasts at most {MAX_EVENT_DAYS} days", param="end")


def _event_fields(component: Any) -> dict[str, Any]:
    """One VEVENT as the store's fields; a 400 naming the event when it lacks a start."""
    uid = str(component.get("uid") or f"{uuid.uuid4()}@llmasos")
    start = component.get("dtstart")
    if start is None:
        raise InvalidRequestError(f"event {uid[:80]!r} has no DTSTART", param="file")
    start_value = start.dt
    all_day = isinstance(start_value, date) and not isinstance(start_value, datetime)
    tz = _zone_of(start_value)
    start_at = instant(start_value, tz, "DTSTART")
    end = component.get("dtend")
    if end is not None:
        end_at = instant(end.dt, tz, "DTEND")
    elif component.get("duration") is not None:
        end_at = start_at + component.get("duration").dt
    else:
        end_at = start_at + (timedelta(days=1) if all_day else timedelta(0))
    check_span(start_at, end_at)
    return {
        "uid": uid,
        "title": str(component.get("summary") or "(no title)")[:MAX_TITLE_CHARS],
        "location": str(component.get("location") or "")[:MAX_TITLE_CHARS],
        "notes": str(component.get("description") or "")[:MAX_NOTES_CHARS],
        "start": start_at,
        "end": end_at,
        "tz": tz.key,
        "all_day": all_day,
    }


def _zone_of(value: date | datetime) -> ZoneInfo:
    tzinfo = value.tzinfo if isinstance(value, datetime) else None
    key = getattr(tzinfo, "key", None) or getattr(tzinfo, "zone", None)
    if isinstance(key, str):
        try:
            return zone(key)
        except InvalidRequestError:
            pass
    return ZoneInfo("UTC")

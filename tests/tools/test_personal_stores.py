"""Notes, calendar, reminders and notifications on SQLite and PostgreSQL: what a user
keeps, owned per user, sealed at rest, idempotent by key, and reminders firing exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.storage import Database
from llmasos.storage.schema import CalendarEvent, Note, Notification
from llmasos.tools.personal import Personal
from tests.tools.conftest import ALICE, BOB, WebhookSink


def wait_until_due(reminder: dict[str, object]) -> None:
    due = datetime.fromisoformat(str(reminder["due"])).timestamp()
    while time.time() <= due + 0.05:
        time.sleep(0.05)


# --- notes ---------------------------------------------------------------------------------


def test_notes_create_search_edit_delete(personal: Personal, database: Database) -> None:
    notes = personal.notes
    budget = asyncio.run(notes.create(ALICE, "Budget", "rent 900, food 300", ["money"]))
    trip = asyncio.run(notes.create(ALICE, "Trip to Lisbon", "flights on Friday"))
    assert budget["id"].startswith("note_") and budget["tags"] == ["money"]
    assert [n["id"] for n in notes.list_notes(ALICE)] == [trip["id"], budget["id"]]
    found = asyncio.run(notes.search(ALICE, "lisbon flights", k=5))
    assert found[0]["id"] == trip["id"] and "score" in found[0]
    assert asyncio.run(notes.search(ALICE, "rent", mode="bm25"))[0]["id"] == budget["id"]
    edited = asyncio.run(notes.update(ALICE, budget["id"], body="rent 950"))
    assert edited["title"] == "Budget" and edited["body"] == "rent 950"
    assert asyncio.run(notes.search(ALICE, "950", mode="bm25"))[0]["id"] == budget["id"]
    assert asyncio.run(notes.search(ALICE, "900", mode="bm25")) == []
    with database.session() as session:  # sealed at rest
        row = session.get(Note, int(budget["id"].removeprefix("note_")))
        assert row is not None and b"rent" not in row.content and b"Budget" not in row.content
    asyncio.run(notes.delete(ALICE, budget["id"]))
    with pytest.raises(NotFoundError):
        notes.get(ALICE, budget["id"])
    assert asyncio.run(notes.search(ALICE, "budget rent", k=5))[0]["id"] == trip["id"]


def test_notes_are_per_owner(personal: Personal) -> None:
    note = asyncio.run(personal.notes.create(ALICE, "Secret plan", "surprise party"))
    assert asyncio.run(personal.notes.search(BOB, "surprise party", mode="bm25")) == []
    assert personal.notes.list_notes(BOB) == []
    for action in (
        lambda: personal.notes.get(BOB, note["id"]),
        lambda: asyncio.run(personal.notes.update(BOB, note["id"], title="mine")),
        lambda: asyncio.run(personal.notes.delete(BOB, note["id"])),
        lambda: personal.notes.get(ALICE, "note_x"),
    ):
        with pytest.raises(NotFoundError):
            action()
    with pytest.raises(InvalidRequestError):
        asyncio.run(personal.notes.create(ALICE, "   "))


def test_a_key_seen_before_returns_the_first_result(personal: Personal) -> None:
    notes = personal.notes
    first = asyncio.run(notes.create(ALICE, "Groceries", idempotency_key="task1:2"))
    again = asyncio.run(notes.create(ALICE, "Groceries", idempotency_key="task1:2"))
    assert again == first and len(notes.list_notes(ALICE)) == 1
    other = asyncio.run(notes.create(BOB, "Groceries", idempotency_key="task1:2"))
    assert other["id"] != first["id"]  # keys are per owner
    deleted = asyncio.run(notes.delete(ALICE, first["id"], idempotency_key="task1:3"))
    assert asyncio.run(notes.delete(ALICE, first["id"], idempotency_key="task1:3")) == deleted


# --- calendar ------------------------------------------------------------------------------


def test_events_read_times_in_their_zone(personal: Personal) -> None:
    calendar = personal.calendar
    event = calendar.create(
        ALICE, "Dentist", "2031-03-14T09:30", time_zone="Europe/Paris", location="Rue X"
    )
    assert event["start"] == "2031-03-14T09:30:00+01:00"
    assert event["end"] == "2031-03-14T10:30:00+01:00" and event["location"] == "Rue X"
    utc = calendar.create(ALICE, "Call", "2031-03-14T12:00:00Z", end="2031-03-14T12:30:00Z")
    listed = calendar.list_events(ALICE, start="2031-03-14T00:00Z", end="2031-03-15T00:00Z")
    assert [e["id"] for e in listed] == [event["id"], utc["id"]]
    assert calendar.list_events(ALICE, start="2031-03-14T10:45+01:00") == [utc]
    assert calendar.list_events(BOB) == []
    with pytest.raises(InvalidRequestError, match="unknown time zone 'Mars/Base'"):
        calendar.create(ALICE, "x", "2031-01-01T10:00", time_zone="Mars/Base")
    with pytest.raises(InvalidRequestError, match="end: must not be before start"):
        calendar.create(ALICE, "x", "2031-01-01T10:00", end="2031-01-01T09:00")
    with pytest.raises(InvalidRequestError, match="not an ISO 8601 time"):
        calendar.create(ALICE, "x", "next tuesday")
    with pytest.raises(NotFoundError):
        calendar.delete(BOB, event["id"])


def test_ics_export_import_round_trip(personal: Personal, database: Database) -> None:
    calendar = personal.calendar
    calendar.create(ALICE, "Standup", "2031-05-04T09:00", time_zone="America/New_York",
                    notes="bring notes", location="Room 1")  # fmt: skip
    calendar.create(ALICE, "Holiday", "2031-05-10", all_day=True)
    ics = calendar.export_ics(ALICE)
    assert b"BEGIN:VCALENDAR" in ics and b"SUMMARY:Standup" in ics
    assert b"TZID=America/New_York" in ics
    result = calendar.import_ics(BOB, ics)
    assert (result["created"], result["updated"]) == (2, 0)
    mine = {e["title"]: e for e in calendar.list_events(ALICE)}
    theirs = {e["title"]: e for e in calendar.list_events(BOB)}
    for title in ("Standup", "Holiday"):
        for field in ("uid", "start", "end", "time_zone", "all_day", "location", "notes"):
            assert theirs[title][field] == mine[title][field], (title, field)
    again = calendar.import_ics(BOB, ics)
    assert (again["created"], again["updated"]) == (0, 2)
    assert len(calendar.list_events(BOB)) == 2
    with pytest.raises(InvalidRequestError, match="not an iCalendar file"):
        calendar.import_ics(BOB, b"hello, world")
    with database.session() as session:
        assert all(b"Standup" not in row.content for row in session.scalars(select(CalendarEvent)))


def test_deleting_an_event_deletes_its_reminder(personal: Personal) -> None:
    start = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    event = personal.calendar.create(ALICE, "Flight", start, remind_minutes_before=60)
    reminders = personal.reminders.list_reminders(ALICE)
    assert [r["id"] for r in reminders] == [event["reminder_id"]]
    assert reminders[0]["event_id"] == event["id"]
    personal.calendar.delete(ALICE, event["id"])
    assert personal.reminders.list_reminders(ALICE) == []
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with pytest.raises(InvalidRequestError, match="in the past"):
        personal.calendar.create(ALICE, "Now", soon, remind_minutes_before=30)
    # a model once asked for a reminder 10^20 minutes before: an error, not an overflow
    with pytest.raises(InvalidRequestError, match="from 0 to 525,600"):
        personal.calendar.create(ALICE, "Far", start, remind_minutes_before=10**20)


# --- reminders -----------------------------------------------------------------------------


def test_reminder_in_the_past_or_bad_zone_is_refused(personal: Personal) -> None:
    with pytest.raises(InvalidRequestError, match="is in the past") as error:
        personal.reminders.create(ALICE, "late", due="2020-01-01T09:00", time_zone="UTC")
    assert error.value.code == "time_in_past" and error.value.param == "due"
    with pytest.raises(InvalidRequestError, match="unknown time zone") as zone_error:
        personal.reminders.create(ALICE, "x", in_seconds=60, time_zone="Europe/Nowhere")
    assert zone_error.value.param == "time_zone"
    with pytest.raises(InvalidRequestError, match="exactly one of due or in_seconds"):
        personal.reminders.create(ALICE, "x")


def test_a_due_reminder_fires_once_across_restarts(personal: Personal, database: Database) -> None:
    from llmasos.tools.personal import open_personal
    from tests.memory.conftest import WordEngine

    reminder = personal.reminders.create(ALICE, "stretch", in_seconds=0.3)
    later = personal.reminders.create(ALICE, "sleep", in_seconds=3600)
    wait_until_due(reminder)
    # two servers (or one before and one after a restart) look at the same database
    other = open_personal(personal.mail.settings, database, WordEngine())
    fired = personal.reminders.fire_due() + other.reminders.fire_due()
    fired += personal.reminders.fire_due()
    assert [(owner, n["source_ref"]) for owner, n in fired] == [("user:1", reminder["id"])]
    assert fired[0][1]["title"] == "stretch" and fired[0][1]["kind"] == "reminder"
    statuses = {r["id"]: r["status"] for r in personal.reminders.list_reminders(ALICE)}
    assert statuses == {reminder["id"]: "fired", later["id"]: "pending"}
    with database.session() as session:
        assert len(list(session.scalars(select(Notification)))) == 1
    inbox = personal.notifications.list_notifications(ALICE)
    assert [n["title"] for n in inbox] == ["stretch"] and inbox[0]["read"] is False
    assert personal.notifications.list_notifications(BOB) == []
    with pytest.raises(NotFoundError):
        personal.notifications.mark_read(BOB, [inbox[0]["id"]])
    assert personal.notifications.mark_read(ALICE, [inbox[0]["id"]]) == 1
    assert personal.notifications.list_notifications(ALICE, unread=True) == []


def test_scheduler_delivers_to_the_stream_and_the_webhook(
    personal: Personal, webhook_sink: WebhookSink
) -> None:
    personal.notifications.allow_private_webhooks = True
    personal.notifications.backoff_s = (0.05,)
    webhook_sink.fail_first = 1
    personal.notifications.set_webhook(ALICE, webhook_sink.url)

    async def scenario() -> dict[str, object]:
        await personal.start()
        try:
            async with personal.notifications.subscribe(ALICE) as queue:
                await asyncio.to_thread(
                    personal.reminders.create, ALICE, "tea is ready", in_seconds=1
                )
                notification: dict[str, object] = await asyncio.wait_for(queue.get(), 60)
            await asyncio.to_thread(webhook_sink.received.wait, 60)
            for _ in range(600):  # the delivery is recorded just after the POST
                stored = personal.notifications.get(ALICE, str(notification["id"]))
                if stored["webhook"]["status"] != "pending":
                    break
                await asyncio.sleep(0.05)
            return notification
        finally:
            await personal.stop()

    notification = asyncio.run(scenario())
    assert notification["title"] == "tea is ready"
    assert [r["id"] for r in webhook_sink.requests] == [notification["id"]] * 2
    stored = personal.notifications.get(ALICE, str(notification["id"]))
    assert stored["webhook"] == {"status": "delivered", "attempts": 2, "error": None}


def test_a_webhook_that_keeps_failing_is_recorded(
    personal: Personal, webhook_sink: WebhookSink
) -> None:
    center = personal.notifications
    center.allow_private_webhooks = True
    center.backoff_s = (0.01,)
    webhook_sink.fail_first = 100
    center.set_webhook(ALICE, webhook_sink.url)
    with personal.notifications.database.session(write=True) as session:
        row = center.add(session, ALICE, "reminder", "call mum")
    number = f"ntf_{row.id}"
    assert asyncio.run(center.deliver(ALICE.key, number)) == "failed"
    stored = center.get(ALICE, number)
    assert stored["webhook"]["status"] == "failed" and stored["webhook"]["attempts"] == 4
    assert "HTTP 500" in stored["webhook"]["error"]
    assert len(webhook_sink.requests) == 4
    center.allow_private_webhooks = False  # the default: loopback is refused, not retried
    with personal.notifications.database.session(write=True) as session:
        row = center.add(session, ALICE, "reminder", "again")
    assert asyncio.run(center.deliver(ALICE.key, f"ntf_{row.id}")) == "failed"
    assert "private or internal address" in center.get(ALICE, f"ntf_{row.id}")["webhook"]["error"]
    assert len(webhook_sink.requests) == 4
    with pytest.raises(InvalidRequestError):
        center.set_webhook(ALICE, "ftp://example.com/x")

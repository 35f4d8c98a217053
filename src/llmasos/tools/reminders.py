"""Reminders that fire at their time, the scheduler that fires them, and the reminder tools.

A reminder is a row with a due time (an instant, shown in its IANA time zone) and a status:
``pending`` until `ReminderStore.fire_due` claims it. Claiming is one conditional UPDATE
(``status = 'pending'`` → ``'fired'``) in the same transaction that writes its
notification, so a reminder fires exactly once even with several servers on one
PostgreSQL database, and one that fell due while the server was down fires once at the next
start. `ReminderScheduler` runs in the server: it fires what is due, then sleeps until the
next due time (or `POLL_S`, to see reminders other processes added), woken early when a
reminder is added here. A time in the past or an unknown time zone is a 400 (a `ToolError`
for the tools ``reminder_create``, ``reminder_list`` and ``reminder_delete``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import Reminder
from llmasos.tools.notifications import NotificationCenter
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

logger = logging.getLogger(__name__)

REMINDER_IDS: Final = RowIds("rem", "reminder")
MAX_TEXT_CHARS: Final = 1000
POLL_S: Final = 30.0
FIRE_BATCH: Final = 100
MAX_AHEAD: Final = timedelta(days=366 * 10)


def due_time(
    due: Any, in_seconds: float | None, time_zone: str | None, field: str = "due"
) -> tuple[datetime, str]:
    """The due instant and the zone's name from ``due`` (ISO 8601) or ``in_seconds``; a
    400 for a time that is not in the future or an unknown zone."""
    tz = zone(time_zone)
    if (due is None) == (in_seconds is None):
        raise InvalidRequestError("give exactly one of due or in_seconds", param=field)
    current = now()
    if in_seconds is not None:
        if not isinstance(in_seconds, int | float) or in_seconds <= 0:
            raise InvalidRequestError(
                "in_seconds: must be a positive number", param="in_seconds", code="time_in_past"
            )
        moment = current + timedelta(seconds=float(in_seconds))
    else:
        moment = instant(due, tz, field)
    if moment <= current:
        raise InvalidRequestError(
            f"{field}: {moment.astimezone(tz).isoformat()} is in the past (it is now "
            f"{current.astimezone(tz).isoformat(timespec='seconds')} in {tz.key}); give a "
            "future time",
            param=field,
            code="time_in_past",
        )
    if moment - current > MAX_AHEAD:
        raise InvalidRequestError(f"{field}: more than ten years ahead", param=field)
    return moment, tz.key


class ReminderStore:
    """Reminders of every owner, and the one place they fire."""

    def __init__(
        self, database: Database, cipher: ContentCipher, notifications: NotificationCenter
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.sealed = Sealed(cipher, "reminders")
        self.notifications = notifications
        self.on_change: Callable[[], None] | None = None
        """Called after a reminder is added (the scheduler's wake-up)."""

    def to_dict(self, row: Reminder) -> dict[str, Any]:
        return {
            "id": REMINDER_IDS.format(row.id),
            "object": "reminder",
            "text": self.sealed.open(row.id, row.content).get("text", ""),
            "due": local_iso(row.due_at, row.time_zone),
            "due_at": epoch(row.due_at),
            "time_zone": row.time_zone,
            "status": row.status,
            "event_id": None if row.event_id is None else f"evt_{row.event_id}",
            "created_at": epoch(row.created_at),
            "fired_at": epoch(row.fired_at),
        }

    def new_row(
        self,
        session: Session,
        owner: Owner,
        text: str,
        due_at: datetime,
        time_zone: str,
        event_id: int | None = None,
    ) -> Reminder:
        row = Reminder(
            owner=owner.key,
            user_id=owner.user_id,
            event_id=event_id,
            due_at=due_at,
            time_zone=time_zone,
            status="pending",
            content=b"",
            created_at=now(),
        )
        session.add(row)
        session.flush()
        row.content = self.sealed.seal(row.id, {"text": text})
        return row

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def create(
        self,
        owner: Owner,
        text: str,
        *,
        due: Any = None,
        in_seconds: float | None = None,
        time_zone: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        text = check_text(text, "text", MAX_TEXT_CHARS)
        due_at, zone_name = due_time(due, in_seconds, time_zone)

        def act(session: Session) -> dict[str, Any]:
            return self.to_dict(self.new_row(session, owner, text, due_at, zone_name))

        result, _ = once(self.database, self.cipher, owner, idempotency_key, "reminder", act)
        self.changed()
        return result

    def list_reminders(
        self, owner: Owner, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The owner's reminders, soonest first; ``status`` pending or fired."""
        if status not in (None, "pending", "fired"):
            raise InvalidRequestError("status: use pending or fired", param="status")
        statement = select(Reminder).where(Reminder.owner == owner.key)
        if status is not None:
            statement = statement.where(Reminder.status == status)
        statement = statement.order_by(Reminder.due_at, Reminder.id).limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self.to_dict(row) for row in session.scalars(statement)]

    def get(self, owner: Owner, reminder_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            return self.to_dict(self._row(session, owner, reminder_id))

    def _row(self, session: Session, owner: Owner, reminder_id: str) -> Reminder:
        row = session.get(Reminder, REMINDER_IDS.parse(reminder_id))
        if row is None or row.owner != owner.key:
            raise REMINDER_IDS.missing(reminder_id)
        return row

    def delete(
        self, owner: Owner, reminder_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        def act(session: Session) -> dict[str, Any]:
            row = self._row(session, owner, reminder_id)
            text = self.sealed.open(row.id, row.content).get("text", "")
            session.delete(row)
            return {"id": reminder_id, "object": "reminder.deleted", "deleted": True, "text": text}

        result, _ = once(self.database, self.cipher, owner, idempotency_key, "reminder", act)
        return result

    # --- firing ----------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        with self.database.session() as session:
            return session.scalar(
                select(func.min(Reminder.due_at)).where(Reminder.status == "pending")
            )

    def fire_due(self) -> list[tuple[str, dict[str, Any]]]:
        """Fire every pending reminder that is due: each claimed and its notification
        written in one transaction. Returns (owner key, notification) to publish."""
        fired: list[tuple[str, dict[str, Any]]] = []
        while True:
            with self.database.session() as session:
                due = list(
                    session.scalars(
                        select(Reminder.id)
                        .where(Reminder.status == "pending", Reminder.due_at <= now())
                        .order_by(Reminder.due_at)
                        .limit(FIRE_BATCH)
                    )
                )
            for number in due:
                notification = self._fire(number)
                if notification is not None:
                    fired.append(notification)
            if len(due) < FIRE_BATCH:
                return fired

    def _fire(self, number: int) -> tuple[str, dict[str, Any]] | None:
        with self.database.session(write=True) as session:
            claimed = session.execute(
                update(Reminder)
                .where(Reminder.id == number, Reminder.status == "pending")
                .values(status="fired", fired_at=now())
            )
            if not getattr(claimed, "rowcount", 0):
                return None  # another scheduler fired it, or it was deleted
            row = session.get(Reminder, number)
            assert row is not None
            owner = Owner(row.owner, row.user_id)
            text = self.sealed.open(row.id, row.content).get("text", "")
            notification = self.notifications.add(
                session,
                owner,
                "reminder",
                text,
                f"due {local_iso(row.due_at, row.time_zone)}",
                source_ref=REMINDER_IDS.format(row.id),
            )
            return owner.key, self.notifications.to_dict(notification)


class ReminderScheduler:
    """Fires reminders at their time, in the server's event loop."""

    def __init__(self, reminders: ReminderStore, *, poll_s: float = POLL_S) -> None:
        self.reminders = reminders
        self.notifications = reminders.notifications
        self.poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        """Fire what fell due while stopped, resume pending webhooks, then keep watch."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.reminders.on_change = self.wake
        await self.notifications.deliver_pending()
        self._task = asyncio.create_task(self._run(), name="llmasos-reminders")

    def wake(self) -> None:
        """Look again now (thread-safe): a reminder was added."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                for owner_key, notification in await asyncio.to_thread(self.reminders.fire_due):
                    self.notifications.publish(owner_key, notification)
                upcoming = await asyncio.to_thread(self.reminders.next_due)
            except Exception:  # a database hiccup must not end the scheduler
                logger.exception("firing reminders failed; trying again in %s s", self.poll_s)
                upcoming = None
            wait = self.poll_s
            if upcoming is not None:
                wait = min(wait, max(0.0, (upcoming - now()).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.reminders.on_change = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.notifications.close()

"""The personal tools' stores, opened once per database.

`Personal` bundles the notes, calendar, reminders, notification and mail stores of one
database with the reminder scheduler; `personal_for` returns the one bundle of a database
(the server's routes and the tools a task calls share it, so a reminder a tool creates
wakes the server's scheduler). The tools are registered through the plugin registry like
an outside plugin's (``llmasos.plugins.BUILTIN_TOOLS``). `start` and `stop` are what the server's
lifespan calls: fire reminders that fell due while it was down, resume webhooks, mark mail
left half-sent, and keep the scheduler running.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmasos.config import Settings
from llmasos.kernel.interface import EngineClientInterface
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database
from llmasos.tools.calendar import CalendarStore
from llmasos.tools.mail import MailService
from llmasos.tools.notes import COLLECTION as NOTES_COLLECTION
from llmasos.tools.notes import NoteStore, reindex_stale
from llmasos.tools.notifications import NotificationCenter
from llmasos.tools.reminders import ReminderScheduler, ReminderStore

if TYPE_CHECKING:
    from llmasos.tools.interface import ToolSystem


@dataclass
class Personal:
    notes: NoteStore
    calendar: CalendarStore
    reminders: ReminderStore
    notifications: NotificationCenter
    mail: MailService
    scheduler: ReminderScheduler

    async def start(self) -> None:
        await asyncio.to_thread(self.mail.fail_interrupted)
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()


def open_personal(
    settings: Settings, database: Database, engine: EngineClientInterface
) -> Personal:
    """New stores over ``database`` (use `personal_for` to share one bundle)."""
    key = load_master_key(settings)
    cipher = ContentCipher(key)
    notifications = NotificationCenter(
        database, cipher, allow_private_webhooks=settings.webhook_private_addresses
    )
    reminders = ReminderStore(database, cipher, notifications)
    return Personal(
        notes=NoteStore(
            database, engine, cipher, key, embedding_model=settings.default_embedding_model
        ),
        calendar=CalendarStore(database, cipher, reminders),
        reminders=reminders,
        notifications=notifications,
        mail=MailService(settings, database, cipher),
        scheduler=ReminderScheduler(reminders),
    )


_bundles: weakref.WeakKeyDictionary[Database, Personal] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def personal_of(settings: Settings, database: Database, engine: EngineClientInterface) -> Personal:
    """The one bundle of ``database`` in this process."""
    with _lock:
        bundle = _bundles.get(database)
        if bundle is None:
            bundle = _bundles[database] = open_personal(settings, database, engine)
        return bundle


def personal_for(system: ToolSystem) -> Personal:
    return personal_of(system.settings, system.database, system.engine)


def reindex_after_rotation(settings: Settings, database: Database) -> int:
    """Bring the notes index under the current master key; how many notes were redone."""
    key = load_master_key(settings)
    index = HybridIndex(database, NOTES_COLLECTION, TermBlinder(key))
    return reindex_stale(database, index, ContentCipher(key))

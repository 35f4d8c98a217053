"""What the personal stores (notes, calendar, reminders, notifications, mail) share.

`Owner` is whose rows a call touches (``user:<id>``, or ``local`` with authentication off);
every query of a store is scoped to one owner, so another owner's id is simply not found.
`RowIds` turns row numbers into public ids (``note_12``) and back; an id that does not parse
is the same 404 as one that does not exist. `Sealed` keeps a row's personal text as one
`ContentCipher` token of a JSON object, bound to the row (context ``<table>:<id>``).
`zone` and `instant` read IANA time zones and ISO 8601 times, refusing bad ones with a
message that says what to write. `once` runs a side effect under an idempotency key
(``task:step``): the effect and its result are committed together, and the same key again
returns the first result without acting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import (
    CalendarEvent,
    Note,
    Notification,
    NotificationSetting,
    OutboxMessage,
    Reminder,
    ToolCall,
)

T = TypeVar("T")
for _table in (Note, CalendarEvent, Reminder, Notification, OutboxMessage):
    _name = _table.__tablename__
    register_encrypted_column(_table.__table__, "content", context=f"{_name}:{{id}}")  # type: ignore[arg-type]
register_encrypted_column(ToolCall.__table__, "result", context="tool_calls:{id}")  # type: ignore[arg-type]
register_encrypted_column(
    NotificationSetting.__table__,  # type: ignore[arg-type]
    "webhook_url",
    key_column="owner",
    context="notification_settings:{owner}",
)
MAX_KEY_CHARS: Final = 128


@dataclass(frozen=True)
class Owner:
    """Whose rows: a user, or the machine's owner (authentication off)."""

    key: str
    user_id: int | None

    @classmethod
    def for_user(cls, user_id: int | None) -> Owner:
        return cls("local", None) if user_id is None else cls(f"user:{user_id}", user_id)


@dataclass(frozen=True)
class RowIds:
    """Public ids ``<prefix>_<n>`` of one table's rows."""

    prefix: str
    noun: str
    """What the rows are, for messages: ``note``, ``event``."""

    def format(self, row_id: int) -> str:
        return f"{self.prefix}_{row_id}"

    def parse(self, value: str) -> int:
        match = re.fullmatch(rf"{self.prefix}_([1-9][0-9]{{0,17}})", str(value))
        if match is None:
            raise self.missing(value)
        return int(match.group(1))

    def missing(self, value: str) -> NotFoundError:
        return NotFoundError(f"no {self.noun} {str(value)[:80]!r}", code=f"{self.noun}_not_found")


class Sealed:
    """JSON objects sealed with the content cipher, bound to ``<table>:<id>``."""

    def __init__(self, cipher: ContentCipher, table: str) -> None:
        self.cipher = cipher
        self.table = table

    def seal(self, row_id: int, data: dict[str, Any]) -> bytes:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return self.cipher.encrypt(text, context=f"{self.table}:{row_id}")

    def open(self, row_id: int, token: bytes) -> dict[str, Any]:
        data = json.loads(self.cipher.decrypt_text(token, context=f"{self.table}:{row_id}"))
        return data if isinstance(data, dict) else {}


def check_text(value: Any, field: str, limit: int, *, required: bool = True) -> str:
    """``value`` as stripped text of at most ``limit`` characters (413 past it)."""
    from llmasos.errors import PayloadTooLargeError

    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidRequestError(f"{field}: must be non-empty text", param=field)
    if len(value) > limit:
        raise PayloadTooLargeError(
            f"{field}: {len(value)} characters; at most {limit}", param=field
        )
    return value.strip()


def zone(name: str | None, field: str = "time_zone") -> ZoneInfo:
    """The IANA time zone ``name`` (None: UTC); 400 naming the field when unknown."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    try:
        if not isinstance(name, str) or len(name) > 64 or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequestError(
            f"{field}: unknown time zone {str(name)[:64]!r}; use an IANA name such as "
            "Europe/Paris, America/New_York or UTC",
            param=field,
            code="invalid_time_zone",
        ) from None


def instant(value: Any, tz: ZoneInfo, field: str) -> datetime:
    """An ISO 8601 date-time (or a date: its midnight) as an aware datetime; a time without
    an offset is read in ``tz``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(
                f"{field}: {value[:64]!r} is not an ISO 8601 time; write e.g. "
                "2026-03-14T09:30 (in time_zone) or 2026-03-14T09:30:00+01:00",
                param=field,
                code="invalid_time",
            ) from None
    else:
        raise InvalidRequestError(f"{field}: must be an ISO 8601 time", param=field)
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def local_iso(moment: datetime, tz_name: str) -> str:
    """``moment`` in its zone, as ISO 8601 with the offset."""
    return moment.astimezone(zone(tz_name)).isoformat()


def epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def now() -> datetime:
    return datetime.now(UTC)


def once(
    database: Database,
    cipher: ContentCipher,
    owner: Owner,
    key: str | None,
    tool: str,
    act: Callable[[Session], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """``act(session)``'s result, and whether it ran now. With a ``key``, the result is
    stored in the same transaction; a key seen before returns the stored result and
    ``act`` does not run."""
    if key is None:
        with database.session(write=True) as session:
            return act(session), True
    if len(key) > MAX_KEY_CHARS:
        raise InvalidRequestError(f"idempotency key longer than {MAX_KEY_CHARS} characters")
    sealed = Sealed(cipher, "tool_calls")
    for attempt in range(2):
        try:
            with database.session(write=True) as session:
                found = session.scalar(
                    select(ToolCall).where(
                        ToolCall.owner == owner.key, ToolCall.idempotency_key == key
                    )
                )
                if found is not None:
                    return sealed.open(found.id, found.result), False
                result = act(session)
                row = ToolCall(
                    owner=owner.key,
                    user_id=owner.user_id,
                    idempotency_key=key,
                    tool=tool,
                    result=b"",
                    created_at=now(),
                )
                session.add(row)
                session.flush()
                row.result = sealed.seal(row.id, result)
                return result, True
        except IntegrityError:  # the same key committed concurrently: read its result
            if attempt:
                raise
    raise AssertionError("unreachable")


__all__ = [
    "Owner",
    "RowIds",
    "Sealed",
    "check_text",
    "epoch",
    "instant",
    "local_iso",
    "now",
    "once",
    "zone",
]

"""The notification inbox of each user, its live stream and its webhook.

`NotificationCenter.add` writes a notification inside the caller's transaction (a reminder
firing is the notification's creation, so it exists exactly once). Once committed,
`publish` hands it to the live subscribers (``GET /v1/notifications/stream``; each is an
asyncio queue fed thread-safely, so a publisher on any thread or loop reaches it) and, when
the owner set a webhook, POSTs it there as JSON: a failure is retried `WEBHOOK_ATTEMPTS`
times with growing pauses, then recorded on the notification (``webhook.status`` failed,
with the error). Webhooks reach only public addresses unless the operator allows private
ones (``webhook_private_addresses``). Deliveries still pending at a restart are retried by
`deliver_pending`; a delivery runs under the process's claim on the notification
(`llmasos.storage.claims`), so a server starting while another delivers it leaves it alone.
The live stream is this process's: with several servers, a subscriber hears what the server
it is connected to publishes (the inbox and the webhook have everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.net import public_addresses
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import Notification, NotificationSetting
from llmasos.tools.records import Owner, RowIds, Sealed, epoch, now

logger = logging.getLogger(__name__)

NOTIFICATION_IDS: Final = RowIds("ntf", "notification")
WEBHOOK_ATTEMPTS: Final = 4
WEBHOOK_BACKOFF_S: Final = (0.5, 2.0, 5.0)
WEBHOOK_TIMEOUT_S: Final = 10.0
MAX_URL_CHARS: Final = 2000
CLAIM_KIND: Final = "webhook_delivery"


class NotificationCenter:
    """Notifications of every owner: stored, streamed live and sent to webhooks."""

    def __init__(
        self,
        database: Database,
        cipher: ContentCipher,
        *,
        allow_private_webhooks: bool = False,
        backoff_s: tuple[float, ...] = WEBHOOK_BACKOFF_S,
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.sealed = Sealed(cipher, "notifications")
        self.allow_private_webhooks = allow_private_webhooks
        self.backoff_s = backoff_s
        """Pauses between webhook attempts (the last one repeats)."""
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]]
        self._subscribers = {}
        self._lock = threading.Lock()
        self._deliveries: set[asyncio.Task[str]] = set()

    # --- rows ------------------------------------------------------------------------------

    def to_dict(self, row: Notification) -> dict[str, Any]:
        data = self.sealed.open(row.id, row.content)
        return {
            "id": NOTIFICATION_IDS.format(row.id),
            "object": "notification",
            "kind": row.kind,
            "title": data.get("title", ""),
            "body": data.get("body", ""),
            "source_ref": row.source_ref,
            "created_at": epoch(row.created_at),
            "read": row.read_at is not None,
            "read_at": epoch(row.read_at),
            "webhook": None
            if row.webhook_status is None
            else {
                "status": row.webhook_status,
                "attempts": row.webhook_attempts,
                "error": row.webhook_error,
            },
        }

    def add(
        self,
        session: Session,
        owner: Owner,
        kind: str,
        title: str,
        body: str = "",
        source_ref: str | None = None,
    ) -> Notification:
        """A new notification in ``session``'s transaction; `publish` it after the commit."""
        setting = session.get(NotificationSetting, owner.key)
        has_webhook = setting is not None and setting.webhook_url is not None
        row = Notification(
            owner=owner.key,
            user_id=owner.user_id,
            kind=kind,
            source_ref=source_ref,
            content=b"",
            created_at=now(),
            webhook_status="pending" if has_webhook else None,
            webhook_attempts=0,
        )
        session.add(row)
        session.flush()
        row.content = self.sealed.seal(row.id, {"title": title, "body": body})
        return row

    def list_notifications(
        self, owner: Owner, *, unread: bool = False, limit: int = 100, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``after`` (an id) continues a page."""
        statement = select(Notification).where(Notification.owner == owner.key)
        if unread:
            statement = statement.where(Notification.read_at.is_(None))
        if after is not None:
            statement = statement.where(Notification.id < NOTIFICATION_IDS.parse(after))
        statement = statement.order_by(Notification.id.desc()).limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self.to_dict(row) for row in session.scalars(statement)]

    def get(self, owner: Owner, notification_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            row = session.get(Notification, NOTIFICATION_IDS.parse(notification_id))
            if row is None or row.owner != owner.key:
                raise NOTIFICATION_IDS.missing(notification_id)
            return self.to_dict(row)

    def mark_read(self, owner: Owner, ids: Iterable[str] | None) -> int:
        """Mark these notifications (None: all of the owner's) read; how many changed.
        An id that is not the owner's is a 404 and nothing is marked."""
        statement = update(Notification).where(
            Notification.owner == owner.key, Notification.read_at.is_(None)
        )
        with self.database.session(write=True) as session:
            if ids is not None:
                numbers = [NOTIFICATION_IDS.parse(value) for value in ids]
                found = set(
                    session.scalars(
                        select(Notification.id).where(
                            Notification.id.in_(numbers), Notification.owner == owner.key
                        )
                    )
                )
                for value, number in zip(ids, numbers, strict=True):
                    if number not in found:
                        raise NOTIFICATION_IDS.missing(value)
                statement = statement.where(Notification.id.in_(numbers))
            result = session.execute(statement.values(read_at=now()))
            return int(getattr(result, "rowcount", 0) or 0)

    # --- webhook settings ------------------------------------------------------------------

    def webhook(self, owner: Owner) -> str | None:
        with self.database.session() as session:
            row = session.get(NotificationSetting, owner.key)
            if row is None or row.webhook_url is None:
                return None
            context = f"notification_settings:{owner.key}"
            return self.cipher.decrypt_text(row.webhook_url, context=context)

    def set_webhook(self, owner: Owner, url: str | None) -> str | None:
        """Set (or with None, remove) the owner's webhook: an http(s) URL."""
        if url is not None:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidRequestError(
                    "webhook_url: must be an http:// or https:// URL", param="webhook_url"
                )
            if len(url) > MAX_URL_CHARS:
                raise InvalidRequestError(
                    f"webhook_url: longer than {MAX_URL_CHARS} characters", param="webhook_url"
                )
        token = (
            None
            if url is None
            else self.cipher.encrypt(url, context=f"notification_settings:{owner.key}")
        )
        with self.database.session(write=True) as session:
            row = session.get(NotificationSetting, owner.key)
            if row is None:
                session.add(
                    NotificationSetting(
                        owner=owner.key, user_id=owner.user_id, webhook_url=token, updated_at=now()
                    )
                )
            else:
                row.webhook_url = token
                row.updated_at = now()
        return url

    # --- live delivery ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, owner: Owner) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue that receives the owner's notifications (dicts) published from now on."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.setdefault(owner.key, []).append(entry)
        try:
            yield queue
        finally:
            with self._lock:
                entries = self._subscribers.get(owner.key, [])
                if entry in entries:
                    entries.remove(entry)
                if not entries:
                    self._subscribers.pop(owner.key, None)

    def publish(self, owner_key: str, notification: dict[str, Any]) -> None:
        """Hand a committed notification to the live subscribers and its webhook."""
        with self._lock:
            entries = list(self._subscribers.get(owner_key, []))
        for loop, queue in entries:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_offer, queue, notification)
        webhook = notification.get("webhook")
        if webhook is not None and webhook.get("status") == "pending":
            self._start_delivery(owner_key, notification)

    def _start_delivery(self, owner_key: str, notification: dict[str, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(
                self.deliver(owner_key, notification["id"])
            )
        except RuntimeError:  # no loop here (a CLI command): deliver_pending at start
            return
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def deliver(self, owner_key: str, notification_id: str) -> str:
        """POST one notification to its owner's webhook, retrying; the final status, or
        ``pending`` when another live server is delivering it (several on one database)."""
        owner = _owner_of(owner_key)
        number = NOTIFICATION_IDS.parse(notification_id)
        claims, item = self.database.claims, str(number)
        if not await asyncio.to_thread(claims.claim, CLAIM_KIND, item):
            return "pending"
        try:
            done = await asyncio.to_thread(self._webhook_status, number)
            if done in ("delivered", "failed"):  # another server finished it meanwhile
                return done
            return await self._deliver_claimed(owner_key, owner, number)
        finally:
            await asyncio.to_thread(claims.release, CLAIM_KIND, item)

    async def _deliver_claimed(self, owner_key: str, owner: Owner, number: int) -> str:
        notification_id = NOTIFICATION_IDS.format(number)
        error = "no webhook is set"
        for attempt in range(WEBHOOK_ATTEMPTS):
            url = await asyncio.to_thread(self.webhook, owner)
            payload = await asyncio.to_thread(self.get, owner, notification_id)
            if url is None:
                break
            try:
                error = await self._post(url, payload)
            except LLMasOSError as refused:  # a private address: retrying will not help
                error = refused.message
                await asyncio.to_thread(self._record, number, "failed", attempt + 1, error)
                return "failed"
            if not error:
                await asyncio.to_thread(self._record, number, "delivered", attempt + 1, None)
                return "delivered"
            await asyncio.to_thread(self._record, number, "pending", attempt + 1, error)
            if attempt < WEBHOOK_ATTEMPTS - 1:
                await asyncio.sleep(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
        await asyncio.to_thread(self._record, number, "failed", WEBHOOK_ATTEMPTS, error)
        logger.warning("webhook of %s failed for %s: %s", owner_key, notification_id, error)
        return "failed"

    async def _post(self, url: str, payload: dict[str, Any]) -> str:
        """'' when the webhook took it (2xx), else what went wrong."""
        parts = urlsplit(url)
        if not self.allow_private_webhooks:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            await asyncio.to_thread(public_addresses, parts.hostname or "", port)
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
                response = await client.post(url, json=payload)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:500] or type(error).__name__
        if 200 <= response.status_code < 300:
            return ""
        return f"HTTP {response.status_code} from the webhook"

    def _webhook_status(self, number: int) -> str | None:
        with self.database.session() as session:
            return session.scalar(
                select(Notification.webhook_status).where(Notification.id == number)
            )

    def _record(self, number: int, status: str, attempts: int, error: str | None) -> None:
        with self.database.session(write=True) as session:
            row = session.get(Notification, number)
            if row is not None:
                row.webhook_status = status
                row.webhook_attempts = attempts
                row.webhook_error = None if error is None else error[:500]

    async def deliver_pending(self) -> int:
        """Start delivering every notification whose webhook is still pending (after a
        restart); how many."""

        def pending() -> list[tuple[str, int]]:
            with self.database.session() as session:
                rows = session.execute(
                    select(Notification.owner, Notification.id).where(
                        Notification.webhook_status == "pending"
                    )
                )
                return [(owner, number) for owner, number in rows.all()]

        found = await asyncio.to_thread(pending)
        for owner_key, number in found:
            self._start_delivery(owner_key, {"id": NOTIFICATION_IDS.format(number)})
        return len(found)

    async def close(self) -> None:
        """Stop webhook deliveries in flight (they resume at the next start)."""
        tasks = list(self._deliveries)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _offer(queue: asyncio.Queue[Any], item: Any) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a reader that stopped reading loses news
        queue.put_nowait(item)


def _owner_of(key: str) -> Owner:
    if key.startswith("user:"):
        return Owner(key, int(key.removeprefix("user:")))
    return Owner(key, None)

"""``/v1/notifications``: the caller's inbox (list, get, mark read), a live stream and the
webhook setting.

``GET /v1/notifications/stream`` is Server-Sent Events: a ``: connected`` comment once the
subscription is in place, then one ``event: notification`` per new notification (``id:``
its id, ``data:`` its JSON), and a ``: ping`` comment every `HEARTBEAT_S` seconds so
proxies keep the connection open. It sends what arrives after it connected; the list
endpoint has what came before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from llmasos.server.context import owner_of_request
from llmasos.server.notes.router import check_limit, page
from llmasos.server.notifications.protocol import MarkReadRequest, WebhookSetting
from llmasos.tools.notifications import NotificationCenter

HEARTBEAT_S: Final = 15.0


def notifications_router(center: NotificationCenter) -> APIRouter:
    router = APIRouter(tags=["notifications"])

    @router.get("/v1/notifications", summary="The notification inbox, newest first")
    async def list_notifications(
        unread: bool = False, limit: int = 100, after: str | None = None
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            center.list_notifications,
            owner_of_request(),
            unread=unread,
            limit=check_limit(limit) + 1,
            after=after,
        )
        return page(found, limit)

    @router.post("/v1/notifications/read", summary="Mark notifications read")
    async def mark_read(body: MarkReadRequest) -> dict[str, Any]:
        marked = await asyncio.to_thread(center.mark_read, owner_of_request(), body.ids)
        return {"object": "notification.read", "marked": marked}

    @router.get("/v1/notifications/stream", summary="New notifications as Server-Sent Events")
    async def stream() -> StreamingResponse:
        owner = owner_of_request()

        async def events() -> AsyncIterator[str]:
            async with center.subscribe(owner) as queue:
                yield ": connected\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        yield ": ping\n\n"
                        continue
                    data = json.dumps(item, ensure_ascii=False)
                    yield f"id: {item['id']}\nevent: notification\ndata: {data}\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/v1/notifications/webhook", summary="The webhook notifications go to")
    async def get_webhook() -> WebhookSetting:
        url = await asyncio.to_thread(center.webhook, owner_of_request())
        return WebhookSetting(webhook_url=url)

    @router.put("/v1/notifications/webhook", summary="Set or remove the webhook")
    async def set_webhook(body: WebhookSetting) -> WebhookSetting:
        url = await asyncio.to_thread(center.set_webhook, owner_of_request(), body.webhook_url)
        return WebhookSetting(webhook_url=url)

    @router.get("/v1/notifications/{notification_id}", summary="One notification")
    async def get_notification(notification_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(center.get, owner_of_request(), notification_id)

    return router

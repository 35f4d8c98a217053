"""``/v1/outbox``: the caller's sent (or failed) mail, and ``POST`` to send one.

A send answers 200 with the outbox record whatever SMTP said (``status`` and ``error``
tell), since the message was recorded; bad addresses are a 400 and nothing is recorded. An
``Idempotency-Key`` header makes a retried POST return the first record instead of
sending again.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header

from llmasos.server.context import owner_of_request
from llmasos.server.notes.router import check_limit
from llmasos.server.outbox.protocol import SendRequest
from llmasos.tools.mail import MailService


def outbox_router(mail: MailService) -> APIRouter:
    router = APIRouter(tags=["mail"])

    @router.get("/v1/outbox", summary="Mail sent as you, newest first")
    async def list_outbox(status: str | None = None, limit: int = 100) -> dict[str, Any]:
        found = await asyncio.to_thread(
            mail.list_messages, owner_of_request(), status=status, limit=check_limit(limit)
        )
        return {"object": "list", "data": found}

    @router.post("/v1/outbox", summary="Send a message")
    async def send(
        body: SendRequest,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            mail.send,
            owner_of_request(),
            body.to,
            body.subject,
            body.body,
            cc=body.cc,
            idempotency_key=idempotency_key,
        )

    @router.get("/v1/outbox/{message_id}", summary="One message")
    async def get_message(message_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(mail.get, owner_of_request(), message_id)

    return router

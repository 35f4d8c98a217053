"""Request model of ``POST /v1/outbox``. A message comes back as ``{"id": "msg_…", "object":
"outbox.message", "to", "cc", "subject", "body", "status" (queued, sent or failed),
"error", "message_id", "created_at", "sent_at"}``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str]
    cc: list[str] = []
    subject: str
    body: str

"""Request models of ``/v1/notifications``. A notification comes back as ``{"id": "ntf_…",
"object": "notification", "kind", "title", "body", "source_ref", "created_at", "read",
"read_at", "webhook": null | {"status", "attempts", "error"}}``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MarkReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None = None
    """The notifications to mark read; absent: all of them."""


class WebhookSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str | None = None
    """Where every new notification is POSTed as JSON; null: none."""

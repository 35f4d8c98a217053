"""Request models of ``/v1/notes``. A note comes back as ``{"id": "note_…", "object":
"note", "title", "body", "tags", "created_at", "updated_at"}`` (unix seconds), with
``score`` in search results; lists as ``{"object": "list", "data", "has_more"}``. Sizes are
checked by the store (413), not here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class NoteCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    body: str = ""
    tags: list[str] = []


class NoteUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    body: str | None = None
    tags: list[str] | None = None


class NoteSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    k: int = 10
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"

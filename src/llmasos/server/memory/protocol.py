"""Request and response models of the memory and recommendation endpoints.

Items come back as ``{"id": "mem_…", "object": "memory", "text", "kind", "source",
"source_ref", "metadata", "created_at", "updated_at"}`` (unix seconds), plus ``score`` in
search results. Sizes are checked by the memory store (413), not here, so an oversized
item is never mistaken for a malformed one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MemoryOut(BaseModel):
    id: str
    object: Literal["memory"] = "memory"
    text: str
    kind: str
    source: str
    source_ref: str | None = None
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    score: float | None = None
    status: Literal["created", "existing"] | None = Field(
        None, description="On add: whether the item is new or was already remembered."
    )


class MemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryOut]
    has_more: bool = False


class ExtractionUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class MemoryAddResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryOut]
    model: str | None = None
    """The model that extracted facts (when ``messages`` were given)."""
    usage: ExtractionUsage | None = None


class MemoryMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str


class MemoryCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="The fact to remember (or give messages).")
    messages: list[MemoryMessage] | None = Field(
        None, description="A conversation from which the model extracts facts to remember."
    )
    kind: str = Field("fact", description="fact, preference, event or document_note.")
    source: str = Field("user", description="conversation, app or user.")
    source_ref: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: str | None = Field(None, description="The model that extracts (messages only).")


class MemoryUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    kind: str | None = None
    metadata: dict[str, Any] | None = Field(None, description="Replaces the metadata.")


class MemorySearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    k: int = Field(10, description="How many results (1-100).")
    filters: dict[str, Any] = Field(
        default_factory=dict, description="Metadata key -> value that must be equal."
    )
    kind: str | None = None
    since: datetime | None = Field(None, description="Created at or after (ISO 8601 or unix).")
    until: datetime | None = Field(None, description="Created at or before.")
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"


class MemoryDeleted(BaseModel):
    id: str
    object: Literal["memory.deleted"] = "memory.deleted"
    deleted: bool = True


class MemoriesDeleted(BaseModel):
    object: Literal["memory.deleted_all"] = "memory.deleted_all"
    deleted: int = Field(..., description="How many items were forgotten.")


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat: bool = Field(
        ..., description="Inject relevant memories into this user's chat completions."
    )


class RecommendationOut(BaseModel):
    type: Literal["service", "app", "action"]
    name: str
    score: float
    reason: str
    detail: dict[str, Any] = Field(default_factory=dict)


class RecommendationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RecommendationOut]
    cold_start: bool = Field(..., description="True when there was no history to go on.")

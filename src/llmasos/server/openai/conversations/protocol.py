"""Request bodies of ``/v1/conversations`` (responses are the store's OpenAI dicts)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmasos.server.openai.common import OpenAIModel


class ConversationCreateRequest(OpenAIModel):
    metadata: dict[str, Any] | None = Field(
        None, description="Up to 16 string pairs (keys up to 64, values up to 512 characters)."
    )
    items: list[dict[str, Any]] | None = Field(
        None, description="Initial items (messages, function calls and their outputs), at most 20."
    )


class ConversationUpdateRequest(OpenAIModel):
    metadata: dict[str, Any] | None = Field(..., description="Replaces the metadata.")


class ItemsCreateRequest(OpenAIModel):
    items: list[dict[str, Any]] = Field(..., description="Items to append, at most 20.")

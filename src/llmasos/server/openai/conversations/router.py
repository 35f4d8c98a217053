"""``/v1/conversations`` and ``/v1/conversations/{id}/items`` (OpenAI's Conversations API),
plus ``GET /v1/conversations`` listing the caller's conversations (an LLMasOS addition)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from llmasos.server.openai.conversations.protocol import (
    ConversationCreateRequest,
    ConversationUpdateRequest,
    ItemsCreateRequest,
)
from llmasos.server.openai.conversations.serving import (
    ConversationStoreProvider,
    current_owner,
    request_items,
)


def conversations_router(stores: ConversationStoreProvider) -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.post("/v1/conversations", summary="Create a conversation")
    async def create_conversation(body: ConversationCreateRequest) -> dict[str, Any]:
        owner, items = current_owner(), request_items(body.items)
        record = await stores.run(lambda s: s.create(owner, body.metadata, items))
        return record.to_openai()

    @router.get("/v1/conversations", summary="List your conversations (newest first)")
    async def list_conversations(
        limit: int = Query(20, ge=1, le=100), after: str | None = None
    ) -> dict[str, Any]:
        owner = current_owner()
        records = await stores.run(
            lambda s: s.list_conversations(owner, limit=limit + 1, after=after)
        )
        data = [{**r.to_openai(), "items": r.items} for r in records[:limit]]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(records) > limit,
        }

    @router.get("/v1/conversations/{conversation_id}", summary="Retrieve a conversation")
    async def retrieve_conversation(conversation_id: str) -> dict[str, Any]:
        owner = current_owner()
        return (await stores.run(lambda s: s.get(owner, conversation_id))).to_openai()

    @router.post("/v1/conversations/{conversation_id}", summary="Update its metadata")
    async def update_conversation(
        conversation_id: str, body: ConversationUpdateRequest
    ) -> dict[str, Any]:
        owner = current_owner()
        record = await stores.run(lambda s: s.update(owner, conversation_id, body.metadata))
        return record.to_openai()

    @router.delete("/v1/conversations/{conversation_id}", summary="Delete a conversation")
    async def delete_conversation(conversation_id: str) -> dict[str, Any]:
        owner = current_owner()
        await stores.run(lambda s: s.delete(owner, conversation_id))
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    @router.get("/v1/conversations/{conversation_id}/items", summary="List items")
    async def list_items(
        conversation_id: str,
        after: str | None = None,
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        owner = current_owner()
        page = await stores.run(
            lambda s: s.list_items(owner, conversation_id, after=after, limit=limit, order=order)
        )
        return page.to_openai()

    @router.post("/v1/conversations/{conversation_id}/items", summary="Add items")
    async def add_items(conversation_id: str, body: ItemsCreateRequest) -> dict[str, Any]:
        owner, items = current_owner(), request_items(body.items)
        stored = await stores.run(lambda s: s.add_items(owner, conversation_id, items))
        data = [item.to_openai() for item in stored]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }

    @router.get("/v1/conversations/{conversation_id}/items/{item_id}", summary="Retrieve an item")
    async def retrieve_item(conversation_id: str, item_id: str) -> dict[str, Any]:
        owner = current_owner()
        item = await stores.run(lambda s: s.get_item(owner, conversation_id, item_id))
        return item.to_openai()

    @router.delete("/v1/conversations/{conversation_id}/items/{item_id}", summary="Delete an item")
    async def delete_item(conversation_id: str, item_id: str) -> dict[str, Any]:
        owner = current_owner()
        record = await stores.run(lambda s: s.delete_item(owner, conversation_id, item_id))
        return record.to_openai()

    return router

"""``/v1/memories`` (add, list, search, get, edit, forget, settings) and
``GET /v1/recommendations``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Query

from llmasos.errors import InvalidRequestError
from llmasos.memory.recommend import Candidate
from llmasos.server.memory.protocol import (
    MemoriesDeleted,
    MemoryAddResponse,
    MemoryCreateRequest,
    MemoryDeleted,
    MemoryList,
    MemoryOut,
    MemorySearchRequest,
    MemorySettings,
    MemoryUpdateRequest,
    RecommendationList,
)
from llmasos.server.memory.serving import MemoryService


def _metadata_query(value: str | None) -> dict[str, object]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        raise InvalidRequestError(
            "metadata: must be a JSON object of key -> value", param="metadata"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            "metadata: must be a JSON object of key -> value", param="metadata"
        )
    return data


def memory_router(
    service: MemoryService, candidates: Callable[[], Sequence[Candidate]]
) -> APIRouter:
    """The routes over ``service``; ``candidates`` lists what may be recommended now."""
    router = APIRouter(tags=["memory"])

    @router.post("/v1/memories", response_model=MemoryAddResponse, summary="Remember")
    async def add_memory(body: MemoryCreateRequest) -> MemoryAddResponse:
        return await service.add(body)

    @router.get("/v1/memories", response_model=MemoryList, summary="List memories")
    async def list_memories(
        kind: str | None = None,
        metadata: Annotated[
            str | None, Query(description='JSON object that must match, e.g. {"topic":"food"}')
        ] = None,
        limit: int = 100,
        after: Annotated[str | None, Query(description="Continue after this id.")] = None,
    ) -> MemoryList:
        return await service.list_items(kind, _metadata_query(metadata), limit, after)

    @router.delete("/v1/memories", response_model=MemoriesDeleted, summary="Forget everything")
    async def forget_all() -> MemoriesDeleted:
        return MemoriesDeleted(deleted=await service.delete_all())

    @router.post("/v1/memories/search", response_model=MemoryList, summary="Search memories")
    async def search_memories(body: MemorySearchRequest) -> MemoryList:
        return await service.search(body)

    @router.get("/v1/memories/settings", response_model=MemorySettings, summary="Settings")
    async def get_settings() -> MemorySettings:
        return MemorySettings(chat=await service.settings())

    @router.post("/v1/memories/settings", response_model=MemorySettings, summary="Settings")
    async def set_settings(body: MemorySettings) -> MemorySettings:
        return MemorySettings(chat=await service.set_settings(body.chat))

    @router.get("/v1/memories/{memory_id}", response_model=MemoryOut, summary="One memory")
    async def get_memory(memory_id: str) -> MemoryOut:
        return await service.get(memory_id)

    @router.patch("/v1/memories/{memory_id}", response_model=MemoryOut, summary="Edit")
    async def update_memory(memory_id: str, body: MemoryUpdateRequest) -> MemoryOut:
        return await service.update(memory_id, body)

    @router.delete("/v1/memories/{memory_id}", response_model=MemoryDeleted, summary="Forget")
    async def delete_memory(memory_id: str) -> MemoryDeleted:
        await service.delete(memory_id)
        return MemoryDeleted(id=memory_id)

    @router.get(
        "/v1/recommendations", response_model=RecommendationList, summary="Suggestions for you"
    )
    async def recommendations(limit: int = 10) -> RecommendationList:
        return await service.recommend(candidates(), limit)

    return router

"""``/v1/notes``: CRUD and hybrid search over the caller's notes (`NoteStore`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from llmasos.errors import InvalidRequestError
from llmasos.server.context import owner_of_request
from llmasos.server.notes.protocol import NoteCreateRequest, NoteSearchRequest, NoteUpdateRequest
from llmasos.tools.notes import NoteStore


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A list answer from ``limit + 1`` fetched items."""
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def check_limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("limit: must be between 1 and 1000", param="limit")
    return limit


def notes_router(store: NoteStore) -> APIRouter:
    router = APIRouter(tags=["notes"])

    @router.post("/v1/notes", summary="Write a note")
    async def create_note(body: NoteCreateRequest) -> dict[str, Any]:
        return await store.create(owner_of_request(), body.title, body.body, body.tags)

    @router.get("/v1/notes", summary="List notes, newest first")
    async def list_notes(limit: int = 100, after: str | None = None) -> dict[str, Any]:
        found = await asyncio.to_thread(
            store.list_notes, owner_of_request(), limit=check_limit(limit) + 1, after=after
        )
        return page(found, limit)

    @router.post("/v1/notes/search", summary="Search notes by words and meaning")
    async def search_notes(body: NoteSearchRequest) -> dict[str, Any]:
        found = await store.search(owner_of_request(), body.query, k=body.k, mode=body.mode)
        return {"object": "list", "data": found, "has_more": False}

    @router.get("/v1/notes/{note_id}", summary="One note")
    async def get_note(note_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(store.get, owner_of_request(), note_id)

    @router.patch("/v1/notes/{note_id}", summary="Edit a note")
    async def update_note(note_id: str, body: NoteUpdateRequest) -> dict[str, Any]:
        return await store.update(
            owner_of_request(), note_id, title=body.title, body=body.body, tags=body.tags
        )

    @router.delete("/v1/notes/{note_id}", summary="Delete a note")
    async def delete_note(note_id: str) -> dict[str, Any]:
        return await store.delete(owner_of_request(), note_id)

    return router

"""``/v1/files`` (OpenAI's Files API): upload (multipart), list, retrieve, content, delete."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from llmasos.knowledge.stores import KnowledgeBase
from llmasos.server.openai.common import list_page
from llmasos.server.openai.files.serving import current_user, read_upload


def files_router(knowledge: KnowledgeBase) -> APIRouter:
    router = APIRouter(tags=["knowledge"])
    files = knowledge.files

    @router.post(
        "/v1/files",
        summary="Upload a file (multipart: file, purpose)",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "purpose"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "purpose": {"type": "string"},
                            },
                        }
                    }
                }
            }
        },
    )
    async def upload_file(request: Request) -> dict[str, Any]:
        return (await read_upload(request, files)).to_dict()

    @router.get("/v1/files", summary="List your files")
    async def list_files(
        purpose: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        user = current_user()
        found = await asyncio.to_thread(
            files.list_files, user, purpose=purpose, limit=limit + 1, after=after, order=order
        )
        return list_page(found, limit)

    @router.get("/v1/files/{file_id}", summary="Retrieve a file")
    async def retrieve_file(file_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(files.get, current_user(), file_id)).to_dict()

    @router.get("/v1/files/{file_id}/content", summary="The file's bytes")
    async def file_content(file_id: str) -> FileResponse:
        info, path = await asyncio.to_thread(files.content_path, current_user(), file_id)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=info.filename,
            content_disposition_type="attachment",
        )

    @router.delete("/v1/files/{file_id}", summary="Delete a file (and its chunks in every store)")
    async def delete_file(file_id: str) -> dict[str, Any]:
        await asyncio.to_thread(knowledge.delete_file, current_user(), file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    return router

"""Ollama model management: tags, ps, show, pull, copy, delete, create, version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.models import ModelStoreInterface
from llmasos.server.ollama.generate.router import NDJSON, NDJSON_RESPONSE
from llmasos.server.ollama.models.protocol import (
    CopyBody,
    CreateBody,
    NamedBody,
    PullBody,
    ShowBody,
)
from llmasos.server.ollama.models.serving import OllamaModelsService, pull_lines, version
from llmasos.server.streaming import StreamingBody, ndjson_line


def ollama_models_router(engine: EngineClientInterface, store: ModelStoreInterface) -> APIRouter:
    router = APIRouter(tags=["ollama"])
    service = OllamaModelsService(engine, store)

    @router.get("/api/tags", summary="List local models")
    async def tags() -> dict[str, Any]:
        return await service.tags()

    @router.get("/api/ps", summary="List loaded models")
    async def ps() -> dict[str, Any]:
        return await service.ps()

    @router.post("/api/show", summary="Show a model's details")
    async def show(body: ShowBody) -> dict[str, Any]:
        return await service.show(body.model)

    @router.post("/api/copy", summary="Copy a model")
    async def copy(body: CopyBody) -> Response:
        await service.copy(body.source, body.destination)
        return Response(status_code=200)

    @router.delete("/api/delete", summary="Delete a model")
    async def delete(body: NamedBody) -> Response:
        await service.delete(body.model)
        return Response(status_code=200)

    @router.post("/api/pull", responses=NDJSON_RESPONSE, summary="Pull a model")  # type: ignore[arg-type]
    async def pull(body: PullBody) -> Response:
        updates = service.pull(body.model)
        if not body.stream:
            async for _ in updates:
                pass
            return JSONResponse({"status": "success"})
        try:
            first = await anext(updates)
        except StopAsyncIteration:
            first = None
        return StreamingBody(pull_lines(first, updates), media_type=NDJSON)

    @router.post("/api/create", responses=NDJSON_RESPONSE, summary="Create a model")  # type: ignore[arg-type]
    async def create(body: CreateBody) -> Response:
        await service.create(body)
        if body.stream:
            return Response(ndjson_line({"status": "success"}), media_type=NDJSON)
        return JSONResponse({"status": "success"})

    @router.get("/api/version", summary="Server version")
    async def get_version() -> dict[str, str]:
        return version()

    return router

"""``POST /v1/responses``, ``GET|DELETE /v1/responses/{id}``, ``GET .../input_items``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.server.context import current_request_id
from llmasos.server.memory.serving import MemoryService
from llmasos.server.openai.conversations.serving import ConversationStoreProvider
from llmasos.server.openai.responses.protocol import ResponseCreateRequest
from llmasos.server.openai.responses.serving import ResponseService
from llmasos.server.streaming import StreamingBody

SSE_RESPONSE = {
    200: {
        "description": "A response, or with stream=true server-sent Responses events",
        "content": {"text/event-stream": {}},
    }
}


def responses_router(
    engine: EngineClientInterface,
    stores: ConversationStoreProvider,
    memory: MemoryService | None = None,
    knowledge: KnowledgeBase | None = None,
) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = ResponseService(engine, stores, memory, knowledge)

    @router.post(
        "/v1/responses",
        responses=SSE_RESPONSE,  # type: ignore[arg-type]
        summary="Create a model response",
    )
    async def create_response(body: ResponseCreateRequest) -> Response:
        turn = await service.start(body, current_request_id())
        if body.stream:
            return StreamingBody(service.stream(turn), media_type="text/event-stream")
        return JSONResponse(await service.complete(turn))

    @router.get("/v1/responses/{response_id}", summary="Retrieve a stored response")
    async def retrieve_response(response_id: str) -> dict[str, Any]:
        return await service.retrieve(response_id)

    @router.delete("/v1/responses/{response_id}", summary="Delete a stored response")
    async def delete_response(response_id: str) -> dict[str, Any]:
        return await service.delete(response_id)

    @router.get("/v1/responses/{response_id}/input_items", summary="List a response's input")
    async def list_input_items(
        response_id: str,
        after: str | None = None,
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        return await service.input_items(response_id, after, limit, order)

    return router

"""``POST /v1/completions``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import current_request_id
from llmasos.server.openai.chat.router import SSE_RESPONSE
from llmasos.server.openai.completions.protocol import Completion, CompletionRequest
from llmasos.server.openai.completions.serving import CompletionService
from llmasos.server.streaming import StreamingBody


def completions_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = CompletionService(engine)

    @router.post(
        "/v1/completions",
        response_model=Completion,
        responses=SSE_RESPONSE,  # type: ignore[arg-type]
        summary="Create a text completion (raw prompt, no chat template)",
    )
    async def create_completion(body: CompletionRequest) -> Response:
        streams = await service.start(body, current_request_id())
        if body.stream:
            return StreamingBody(service.stream(body, streams), media_type="text/event-stream")
        return JSONResponse((await service.complete(body, streams)).model_dump())

    return router

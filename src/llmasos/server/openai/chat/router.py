"""``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import current_request_id
from llmasos.server.openai.chat.protocol import ChatCompletion, ChatCompletionRequest
from llmasos.server.openai.chat.serving import ChatCompletionService
from llmasos.server.streaming import StreamingBody

SSE_RESPONSE = {
    200: {
        "description": "A chat completion, or with stream=true server-sent events of chunks",
        "content": {"text/event-stream": {}},
    }
}


def chat_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = ChatCompletionService(engine)

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses=SSE_RESPONSE,  # type: ignore[arg-type]
        summary="Create a chat completion",
    )
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        plan, streams = await service.start(body, current_request_id())
        if body.stream:
            return StreamingBody(
                service.stream(body, plan, streams), media_type="text/event-stream"
            )
        completion = await service.complete(body, plan, streams)
        return JSONResponse(completion.model_dump())

    return router

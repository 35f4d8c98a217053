"""``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import current_request_id
from llmasos.server.openai.chat.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageParam,
)
from llmasos.server.openai.chat.serving import ChatCompletionService
from llmasos.server.streaming import StreamingBody

if TYPE_CHECKING:
    from llmasos.server.memory.serving import MemoryService

SSE_RESPONSE = {
    200: {
        "description": "A chat completion, or with stream=true server-sent events of chunks",
        "content": {"text/event-stream": {}},
    }
}


def last_user_text(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(getattr(part, "text", "") for part in content)
    return ""


async def with_memories(
    body: ChatCompletionRequest, memory: MemoryService
) -> tuple[ChatCompletionRequest, list[str]]:
    """The request with the recalled memories as a system message after the leading system
    messages, and their ids (the body unchanged and no ids when memory is off)."""
    from llmasos.server.memory.serving import recall_message

    items = await memory.recall(body.metadata, last_user_text(body))
    if not items:
        return body, []
    at = 0
    while at < len(body.messages) and body.messages[at].role in ("system", "developer"):
        at += 1
    note = ChatMessageParam(role="system", content=recall_message(items))
    messages = [*body.messages[:at], note, *body.messages[at:]]
    return body.model_copy(update={"messages": messages}), [item.id for item in items]


def chat_router(engine: EngineClientInterface, memory: MemoryService | None = None) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = ChatCompletionService(engine)

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses=SSE_RESPONSE,  # type: ignore[arg-type]
        summary="Create a chat completion",
    )
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        memory_ids: list[str] = []
        if memory is not None:
            body, memory_ids = await with_memories(body, memory)
        plan, streams = await service.start(body, current_request_id())
        if body.stream:
            return StreamingBody(
                service.stream(body, plan, streams, memory_ids=memory_ids),
                media_type="text/event-stream",
            )
        completion = await service.complete(body, plan, streams)
        data = completion.model_dump(exclude={"memory_ids"})
        if memory_ids:
            data["memory_ids"] = memory_ids
        return JSONResponse(data)

    return router

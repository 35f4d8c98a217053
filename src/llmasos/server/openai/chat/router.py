"""``POST /v1/chat/completions``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.citations import Citation, annotate, ground, sources_prompt
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.server.context import current_request_id, tenant_for
from llmasos.server.openai.chat.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageParam,
)
from llmasos.server.openai.chat.serving import ChatCompletionService
from llmasos.server.openai.chat.workflow import is_workflow_model, workflow_completion
from llmasos.server.openai.files.serving import current_user
from llmasos.server.openai.responses.serving import NOTHING_RELEVANT
from llmasos.server.streaming import StreamingBody

if TYPE_CHECKING:
    from llmasos.server.memory.serving import MemoryService
    from llmasos.server.vision import ImageReader
    from llmasos.workflows.system import Workflows

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


def vector_store_ids(metadata: dict[str, str | bool] | None) -> list[str]:
    """``metadata.vector_store_ids``: ids separated by commas, or a JSON list of them."""
    value = (metadata or {}).get("vector_store_ids")
    if value is None:
        return []
    ids: Any = value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            ids = json.loads(value)
        except ValueError:
            ids = None
    elif isinstance(value, str):
        ids = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidRequestError(
            'metadata.vector_store_ids: "vs_a,vs_b" or a JSON list of vector store ids',
            param="metadata.vector_store_ids",
        )
    return ids


async def with_knowledge(
    body: ChatCompletionRequest, knowledge: KnowledgeBase | None
) -> tuple[ChatCompletionRequest, list[Citation] | None]:
    """With ``metadata.vector_store_ids``: the request with the sources found for the last
    user message as a system message, and their citations (None when not asked)."""
    stores = vector_store_ids(body.metadata)
    if not stores:
        return body, None
    if knowledge is None:
        raise InvalidRequestError(
            "metadata.vector_store_ids: this server has no vector stores",
            param="metadata.vector_store_ids",
        )
    query = last_user_text(body)
    if not query.strip():
        raise InvalidRequestError("messages: no user message to search for", param="messages")
    grounding = await ground(knowledge, current_user(), stores, query)
    note = sources_prompt(grounding.citations) if grounding.found else NOTHING_RELEVANT
    at = 0
    while at < len(body.messages) and body.messages[at].role in ("system", "developer"):
        at += 1
    message = ChatMessageParam(role="system", content=note)
    messages = [*body.messages[:at], message, *body.messages[at:]]
    return body.model_copy(update={"messages": messages}), grounding.citations


def chat_router(
    engine: EngineClientInterface,
    memory: MemoryService | None = None,
    images: ImageReader | None = None,
    knowledge: KnowledgeBase | None = None,
    workflows: Workflows | None = None,
) -> APIRouter:
    """The chat endpoint; ``images`` takes image parts to a model that sees them or reads them
    by OCR for one that cannot (without it they are refused); ``knowledge`` grounds requests
    with ``metadata.vector_store_ids``; ``workflows`` answers ``model: "workflow:NAME"``
    with a run of that workflow."""
    router = APIRouter(tags=["openai"])
    service = ChatCompletionService(engine)

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses=SSE_RESPONSE,  # type: ignore[arg-type]
        summary="Create a chat completion",
    )
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        if workflows is not None and is_workflow_model(body.model):
            return await workflow_completion(workflows, body)
        extra: dict[str, Any] = {}
        if images is not None:
            messages, report = await images.openai_messages(
                body.messages, tenant_for(body.user), body.model
            )
            if report is not None:
                body = body.model_copy(update={"messages": messages})
                extra["image_input"] = report.as_dict()
        if memory is not None:
            body, memory_ids = await with_memories(body, memory)
            if memory_ids:
                extra["memory_ids"] = memory_ids
        body, citations = await with_knowledge(body, knowledge)
        plan, streams = await service.start(body, current_request_id())
        if body.stream:
            return StreamingBody(
                service.stream(body, plan, streams, extra_fields=extra, citations=citations),
                media_type="text/event-stream",
            )
        completion = await service.complete(body, plan, streams)
        data = completion.model_dump(exclude={"memory_ids"})
        data.update(extra)
        if citations is not None:
            data["citations"] = [c.to_dict() for c in citations]
            for choice in data["choices"]:
                content = choice["message"].get("content")
                if isinstance(content, str):
                    content, annotations = annotate(content, citations)
                    choice["message"]["content"] = content
                    choice["message"]["annotations"] = annotations
        return JSONResponse(data)

    return router

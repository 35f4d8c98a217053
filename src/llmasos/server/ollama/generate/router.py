"""``POST /api/generate`` and ``POST /api/chat``: NDJSON streams unless ``stream`` is false."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import current_request_id
from llmasos.server.ollama.common import now_rfc3339
from llmasos.server.ollama.generate.protocol import ChatBody, GenerateBody
from llmasos.server.ollama.generate.serving import OllamaGenerateService
from llmasos.server.streaming import StreamingBody

NDJSON = "application/x-ndjson"
NDJSON_RESPONSE = {
    200: {"description": "One JSON object, or NDJSON when streaming", "content": {NDJSON: {}}}
}


def generate_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["ollama"])
    service = OllamaGenerateService(engine)

    @router.post("/api/generate", responses=NDJSON_RESPONSE, summary="Generate a completion")  # type: ignore[arg-type]
    async def generate(body: GenerateBody) -> Response:
        started = time.monotonic()
        if not body.prompt and not body.images:
            reason = await service.load_or_unload(body.model, body.keep_alive)
            return JSONResponse(
                {
                    "model": body.model,
                    "created_at": now_rfc3339(),
                    "response": "",
                    "done": True,
                    "done_reason": reason,
                }
            )
        stream = await service.start_generate(body, current_request_id())
        if body.stream:
            return StreamingBody(service.generate_stream(body, stream, started), media_type=NDJSON)
        return JSONResponse(await service.generate_once(body, stream, started))

    @router.post("/api/chat", responses=NDJSON_RESPONSE, summary="Chat")  # type: ignore[arg-type]
    async def chat(body: ChatBody) -> Response:
        started = time.monotonic()
        if not body.messages:
            reason = await service.load_or_unload(body.model, body.keep_alive)
            return JSONResponse(
                {
                    "model": body.model,
                    "created_at": now_rfc3339(),
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": reason,
                }
            )
        stream, plan = await service.start_chat(body, current_request_id())
        if body.stream:
            return StreamingBody(
                service.chat_stream(body, stream, plan, started), media_type=NDJSON
            )
        return JSONResponse(await service.chat_once(body, stream, plan, started))

    return router

"""``POST /api/generate`` and ``POST /api/chat``: NDJSON streams unless ``stream`` is false."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import current_request_id, tenant_for
from llmasos.server.ollama.common import now_rfc3339
from llmasos.server.ollama.generate.protocol import ChatBody, GenerateBody
from llmasos.server.ollama.generate.serving import OllamaGenerateService
from llmasos.server.streaming import StreamingBody, with_first_line_field

if TYPE_CHECKING:
    from llmasos.server.vision import ImageReader

NDJSON = "application/x-ndjson"
NDJSON_RESPONSE = {
    200: {"description": "One JSON object, or NDJSON when streaming", "content": {NDJSON: {}}}
}


def generate_router(engine: EngineClientInterface, images: ImageReader | None = None) -> APIRouter:
    """Ollama's generate and chat; ``images`` takes ``images`` to a model that sees them or
    reads them by OCR for one that cannot (without it they are refused)."""
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
        report = None
        if images is not None and body.images:
            body, report = await images.ollama_generate(body, tenant_for(None))
        stream = await service.start_generate(body, current_request_id())
        if body.stream:
            lines = service.generate_stream(body, stream, started)
            if report is not None:
                lines = with_first_line_field(lines, "image_input", report.as_dict())
            return StreamingBody(lines, media_type=NDJSON)
        data = await service.generate_once(body, stream, started)
        if report is not None:
            data["image_input"] = report.as_dict()
        return JSONResponse(data)

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
        report = None
        if images is not None:
            messages, report = await images.ollama_messages(
                body.messages, tenant_for(None), body.model
            )
            if report is not None:
                body = body.model_copy(update={"messages": messages})
        stream, plan = await service.start_chat(body, current_request_id())
        if body.stream:
            lines = service.chat_stream(body, stream, plan, started)
            if report is not None:
                lines = with_first_line_field(lines, "image_input", report.as_dict())
            return StreamingBody(lines, media_type=NDJSON)
        data = await service.chat_once(body, stream, plan, started)
        if report is not None:
            data["image_input"] = report.as_dict()
        return JSONResponse(data)

    return router

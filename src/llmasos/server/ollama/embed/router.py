"""``POST /api/embed`` (batch, Ollama 0.3+) and ``POST /api/embeddings`` (legacy, one text)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import report_usage
from llmasos.server.ollama.common import nanoseconds
from llmasos.server.ollama.embed.protocol import EmbedBody, LegacyEmbeddingsBody
from llmasos.server.openai.embeddings.serving import texts_of, truncate_vector


def embed_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["ollama"])

    @router.post("/api/embed", summary="Embed texts")
    async def embed(body: EmbedBody) -> dict[str, Any]:
        started = time.monotonic()
        result = await engine.embed(body.model, texts_of(body.input))
        report_usage(result.model, result.prompt_tokens, 0)
        return {
            "model": result.model,
            "embeddings": [truncate_vector(v, body.dimensions) for v in result.vectors],
            "total_duration": nanoseconds(time.monotonic() - started),
            "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens,
        }

    @router.post("/api/embeddings", summary="Embed one text (legacy)")
    async def embeddings(body: LegacyEmbeddingsBody) -> dict[str, Any]:
        if not body.prompt:
            return {"embedding": []}
        result = await engine.embed(body.model, [body.prompt])
        report_usage(result.model, result.prompt_tokens, 0)
        return {"embedding": result.vectors[0]}

    return router

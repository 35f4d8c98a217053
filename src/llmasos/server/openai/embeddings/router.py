"""``POST /v1/embeddings``."""

from __future__ import annotations

from fastapi import APIRouter

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.openai.embeddings.protocol import EmbeddingRequest, EmbeddingResponse
from llmasos.server.openai.embeddings.serving import EmbeddingService


def embeddings_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = EmbeddingService(engine)

    @router.post("/v1/embeddings", response_model=EmbeddingResponse, summary="Create embeddings")
    async def create_embeddings(body: EmbeddingRequest) -> EmbeddingResponse:
        return await service.embed(body)

    return router

"""``GET /v1/models`` and ``GET /v1/models/{id}`` (ids may contain ``/``)."""

from __future__ import annotations

from fastapi import APIRouter

from llmasos.kernel.interface import EngineClientInterface
from llmasos.models import ModelStoreInterface
from llmasos.server.openai.models.protocol import ModelCard, ModelList
from llmasos.server.openai.models.serving import ModelsService


def models_router(store: ModelStoreInterface, engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["openai"])
    service = ModelsService(store, engine)

    @router.get("/v1/models", response_model=ModelList, summary="List models")
    async def list_models() -> ModelList:
        return await service.list()

    @router.get("/v1/models/{model_id:path}", response_model=ModelCard, summary="Get a model")
    async def get_model(model_id: str) -> ModelCard:
        return await service.get(model_id)

    return router

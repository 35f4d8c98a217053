"""``GET /v1/services``, ``GET /v1/services/{name}``, ``POST /v1/services/{name}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from llmasos.config import Settings
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import ModelStoreInterface
from llmasos.server.services.protocol import ServiceInfo, ServiceList, ServiceResponse
from llmasos.server.services.serving import ServicesService


def services_router(
    engine: EngineClientInterface,
    settings: Settings,
    store: ModelStoreInterface,
    knowledge: KnowledgeBase | None = None,
) -> APIRouter:
    router = APIRouter(tags=["services"])
    service = ServicesService(engine, settings.home, store, settings.default_model, knowledge)

    @router.get("/v1/services", response_model=ServiceList, summary="List named services")
    async def list_services() -> ServiceList:
        return service.list()

    @router.get(
        "/v1/services/{name}", response_model=ServiceInfo, summary="Describe a named service"
    )
    async def describe_service(name: str) -> ServiceInfo:
        return service.info(name)

    @router.post(
        "/v1/services/{name}", response_model=ServiceResponse, summary="Call a named service"
    )
    async def call_service(
        name: str,
        body: Any = Body(..., description="The service's input, plus optional model, parameters."),
    ) -> JSONResponse:
        data = (await service.call(name, body)).model_dump()
        for key in ("citations", "details"):  # only some services have them
            if data[key] is None:
                del data[key]
        return JSONResponse(data)

    return router

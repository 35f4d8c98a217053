"""Named services over HTTP: split the body into input, model and parameters; run; shape.

The reserved body keys ``model`` (a string), ``parameters`` (an object of sampling
parameters) and ``user`` (the tenant when no API key names one, as in OpenAI's API) are
taken out; everything else is the service's input. The registry is reloaded
per request, so a YAML file dropped into ``$LLMASOS_HOME/services`` shows up at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.models import ModelStoreInterface
from llmasos.server.context import report_usage, tenant_for
from llmasos.server.services.protocol import (
    ServiceInfo,
    ServiceList,
    ServiceResponse,
    ServiceUsageOut,
)
from llmasos.services.registry import ServiceRegistry
from llmasos.services.runner import runner_for

RESERVED_KEYS = ("model", "parameters")


class ServicesService:
    def __init__(
        self,
        engine: EngineClientInterface,
        home: Path,
        store: ModelStoreInterface,
        default_model: str,
    ) -> None:
        self.home = home
        self.runner = runner_for(engine, home, store, default_model)

    def list(self) -> ServiceList:
        registry = ServiceRegistry.load(self.home)
        return ServiceList(data=[ServiceInfo(**d.to_dict()) for d in registry.list()])

    def info(self, name: str) -> ServiceInfo:
        return ServiceInfo(**ServiceRegistry.load(self.home).get(name).to_dict())

    async def call(self, name: str, body: Any) -> ServiceResponse:
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        data = dict(body)
        model = data.pop("model", None)
        parameters = data.pop("parameters", None)
        user = data.pop("user", None)
        if model is not None and not isinstance(model, str):
            raise InvalidRequestError("model must be a string", param="model")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequestError("parameters must be an object", param="parameters")
        tenant = tenant_for(user if isinstance(user, str) else None)
        result = await self.runner.call(
            name, data, model=model, parameters=parameters, tenant=tenant
        )
        report_usage(result.model, result.usage.prompt_tokens, result.usage.completion_tokens)
        return ServiceResponse(
            service=result.service,
            model=result.model,
            output=result.output,
            usage=ServiceUsageOut(**result.usage.to_dict()),
        )

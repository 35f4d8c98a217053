"""Named services over HTTP: split the body into input, model and parameters; run; shape.

The reserved body keys ``model`` (a string), ``parameters`` (an object of sampling
parameters), ``user`` (the tenant when no API key names one, as in OpenAI's API) and
``method`` (one of the service's methods) are taken out; everything else is the service's
input. The registry is reloaded per request, so a YAML file dropped into
``$LLMASOS_HOME/services`` shows up at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.citations import NOTHING_FOUND, Grounding, annotate, ground, sources_prompt
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import ModelStoreInterface
from llmasos.server.context import report_usage, tenant_for
from llmasos.server.openai.files.serving import current_user
from llmasos.server.services.protocol import (
    ServiceInfo,
    ServiceList,
    ServiceResponse,
    ServiceUsageOut,
)
from llmasos.services.quality import read_all, read_quality
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
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        self.home = home
        self.knowledge = knowledge
        self.runner = runner_for(engine, home, store, default_model)

    def list(self) -> ServiceList:
        registry = ServiceRegistry.load(self.home)
        quality = read_all(self.home)
        return ServiceList(
            data=[ServiceInfo(**d.to_dict(), quality=quality.get(d.name)) for d in registry.list()]
        )

    def info(self, name: str) -> ServiceInfo:
        definition = ServiceRegistry.load(self.home).get(name)
        return ServiceInfo(**definition.to_dict(), quality=read_quality(self.home, name))

    async def call(self, name: str, body: Any) -> ServiceResponse:
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        data = dict(body)
        model = data.pop("model", None)
        parameters = data.pop("parameters", None)
        user = data.pop("user", None)
        method = data.pop("method", None)
        if method is not None and not isinstance(method, str):
            raise InvalidRequestError("method must be a string", param="method")
        if model is not None and not isinstance(model, str):
            raise InvalidRequestError("model must be a string", param="model")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequestError("parameters must be an object", param="parameters")
        tenant = tenant_for(user if isinstance(user, str) else None)
        grounding = None
        if name == "answer" and "vector_store_ids" in data:
            grounding = await self._ground(data)
            if not grounding.found:  # nothing to answer from: say so, ask no model
                return ServiceResponse(
                    service=name,
                    model=model or "",
                    output=NOTHING_FOUND,
                    usage=ServiceUsageOut(calls=0, chunks=0),
                    details=None,
                    citations=[],
                )
            data["sources"] = sources_prompt(grounding.citations)
        result = await self.runner.call(
            name, data, model=model, parameters=parameters, tenant=tenant, method=method
        )
        report_usage(result.model, result.usage.prompt_tokens, result.usage.completion_tokens)
        output = result.output
        citations = None
        if grounding is not None and isinstance(output, str):
            output, _ = annotate(output, grounding.citations)
            citations = [c.to_dict() for c in grounding.citations]
        return ServiceResponse(
            service=result.service,
            model=result.model,
            output=output,
            usage=ServiceUsageOut(**result.usage.to_dict()),
            details=result.details,
            citations=citations,
        )

    async def _ground(self, data: dict[str, Any]) -> Grounding:
        """Search the stores the answer service names (``vector_store_ids``) for the
        question; the hits become the numbered context."""
        store_ids = data.pop("vector_store_ids")
        if (
            not isinstance(store_ids, list)
            or not store_ids
            or not all(isinstance(s, str) for s in store_ids)
        ):
            raise InvalidRequestError(
                "vector_store_ids: a non-empty list of vector store ids", param="vector_store_ids"
            )
        if self.knowledge is None:
            raise InvalidRequestError(
                "vector_store_ids: this server has no knowledge bases", param="vector_store_ids"
            )
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequestError("question: must be non-empty text", param="question")
        if "context" in data:
            raise InvalidRequestError("give context or vector_store_ids, not both", param="context")
        return await ground(self.knowledge, current_user(), store_ids, question)

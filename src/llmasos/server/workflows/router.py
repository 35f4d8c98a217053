"""``/v1/workflows``: definitions, runs, traces, events (SSE), human answers, webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from llmasos.server.openai.files.serving import current_user
from llmasos.server.streaming import StreamingBody, sse_event
from llmasos.server.workflows.serving import WorkflowsService
from llmasos.workflows.system import Workflows

SSE = "text/event-stream"


def workflows_router(workflows: Workflows) -> APIRouter:
    router = APIRouter(tags=["workflows"])
    service = WorkflowsService(workflows)

    # runs first: /v1/workflows/runs/... must not be read as a workflow named "runs"
    @router.get("/v1/workflows/runs/{run_id}", summary="A run with its trace")
    async def get_run(run_id: str) -> dict[str, Any]:
        return service.run(run_id)

    @router.post("/v1/workflows/runs/{run_id}/cancel", summary="Cancel a run")
    async def cancel_run(run_id: str) -> dict[str, Any]:
        return service.cancel(run_id)

    @router.post("/v1/workflows/runs/{run_id}/resume", summary="Resume a run")
    async def resume_run(run_id: str) -> dict[str, Any]:
        return service.resume(run_id)

    @router.post("/v1/workflows/runs/{run_id}/nodes/{node}/answer", summary="Answer a human node")
    async def answer(run_id: str, node: str, body: Any = Body(None)) -> dict[str, Any]:
        return service.answer(run_id, node, body)

    @router.get("/v1/workflows/runs/{run_id}/events", summary="A run's events (SSE)")
    async def events(run_id: str) -> StreamingBody:
        stream = service.engine.events(current_user(), run_id)
        first = await anext(stream)  # a 404 before the response starts

        async def lines() -> AsyncIterator[str]:
            yield sse_event(first)
            async for event in stream:
                yield sse_event(event)
            yield sse_event("[DONE]")

        return StreamingBody(lines(), media_type=SSE)

    @router.get("/v1/workflows", summary="List workflows")
    async def list_workflows() -> dict[str, Any]:
        return service.list()

    @router.post("/v1/workflows", summary="Create a workflow", status_code=201)
    async def create(body: Any = Body(None)) -> JSONResponse:
        return JSONResponse(service.create(body), status_code=201)

    @router.get("/v1/workflows/{name}", summary="Show a workflow")
    async def get(name: str) -> dict[str, Any]:
        return service.get(name)

    @router.delete("/v1/workflows/{name}", summary="Delete a workflow")
    async def delete(name: str) -> dict[str, Any]:
        return service.delete(name)

    @router.post("/v1/workflows/{name}/runs", summary="Start a run")
    async def start(
        name: str,
        body: Any = Body(None),
        wait: bool = Query(False, description="Answer when the run finishes or waits."),
    ) -> JSONResponse:
        run = service.start(name, body)
        if wait or (isinstance(body, dict) and body.get("wait") is True):
            return JSONResponse(await service.wait(run["id"]))
        return JSONResponse(run, status_code=202)

    @router.get("/v1/workflows/{name}/runs", summary="List a workflow's runs")
    async def runs(name: str) -> dict[str, Any]:
        return service.runs(name)

    @router.post("/v1/workflows/{name}/hooks/{token}", summary="Start a run from a webhook")
    async def hook(name: str, token: str, body: Any = Body(None)) -> JSONResponse:
        return JSONResponse(service.hook(name, token, body), status_code=202)

    return router

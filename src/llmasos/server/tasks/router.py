"""The ``/v1/tasks`` routes over an `AgentRuntime`; every task is its caller's own (another
user's id answers 404). With authentication on they need the ``tasks`` scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from llmasos.access.principal import Principal
from llmasos.agents import AgentRuntime, TaskStatus
from llmasos.errors import InvalidRequestError
from llmasos.server.context import current_principal
from llmasos.server.streaming import sse_event
from llmasos.server.tasks.protocol import TaskCreateRequest

STATUSES = tuple(status.label for status in TaskStatus)


def caller() -> Principal:
    return current_principal() or Principal.local_owner()


def tasks_router(runtime: AgentRuntime, default_model: str) -> APIRouter:
    router = APIRouter(tags=["tasks"])

    @router.post("/v1/tasks", summary="Start a task")
    async def create_task(body: TaskCreateRequest) -> dict[str, Any]:
        record = await runtime.create(caller(), body.spec(default_model))
        return record.to_dict()

    @router.get("/v1/tasks", summary="List tasks, newest first")
    async def list_tasks(
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        status: str | None = None,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise InvalidRequestError(
                f"status must be one of {', '.join(STATUSES)}", param="status"
            )
        records = await runtime.list_tasks(caller(), limit=limit, status=status)
        return {"object": "list", "data": [r.to_dict() for r in records]}

    @router.get("/v1/tasks/{task_id}", summary="Show a task")
    async def get_task(task_id: str) -> dict[str, Any]:
        return (await runtime.get(caller(), task_id)).to_dict()

    @router.get("/v1/tasks/{task_id}/steps", summary="A task's recorded steps")
    async def task_steps(task_id: str) -> dict[str, Any]:
        steps = await runtime.steps(caller(), task_id)
        return {"object": "list", "data": [s.to_dict() for s in steps]}

    @router.post("/v1/tasks/{task_id}/cancel", summary="Kill a task")
    async def cancel_task(task_id: str) -> dict[str, Any]:
        return (await runtime.cancel(caller(), task_id)).to_dict()

    @router.post("/v1/tasks/{task_id}/steps/{step}/approve", summary="Approve a waiting step")
    async def approve_step(task_id: str, step: int) -> dict[str, Any]:
        return (await runtime.approve(caller(), task_id, step)).to_dict()

    @router.post("/v1/tasks/{task_id}/steps/{step}/deny", summary="Refuse a waiting step")
    async def deny_step(task_id: str, step: int) -> dict[str, Any]:
        return (await runtime.deny(caller(), task_id, step)).to_dict()

    @router.get("/v1/tasks/{task_id}/events", summary="Stream a task's steps (SSE)")
    async def task_events(task_id: str) -> StreamingResponse:
        principal = caller()
        events = runtime.events(principal, task_id)
        first = await anext(events)  # a missing or foreign task is a 404 here, not mid-stream

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"event: {first.kind}\n" + sse_event(first.data)
                async for event in events:
                    yield f"event: {event.kind}\n" + sse_event(event.data)
                yield sse_event("[DONE]")
            finally:
                await events.aclose()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return router

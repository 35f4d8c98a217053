"""``Client.tasks`` / ``AsyncClient.tasks``: the calling user's agent tasks (``/v1/tasks``).

`Tasks` (blocking) and `AsyncTasks` (awaited) send the same request tuples: `create`,
`list`, `get`, `steps`, `cancel`, `approve`, `deny`, and `wait` (polls until the task is
finished or waits for an approval). Tasks are `Task` values; steps are the API's dicts.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from llmasos.errors import RequestTimeoutError

RequestFunction = Callable[[str, str, Any], Any]
AsyncRequestFunction = Callable[[str, str, Any], Awaitable[Any]]
Call = tuple[str, str, Any]
SETTLED = frozenset({"completed", "stopped", "failed", "cancelled", "waiting_approval"})
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Task:
    id: str
    status: str
    instruction: str
    model: str
    steps: int = 0
    result: str | None = None
    error_code: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """The whole object as the API returned it."""

    @property
    def settled(self) -> bool:
        """Finished, or waiting for the owner's approval."""
        return self.status in SETTLED


def task_from_dict(data: Mapping[str, Any]) -> Task:
    return Task(
        id=str(data["id"]),
        status=str(data["status"]),
        instruction=str(data.get("instruction", "")),
        model=str(data.get("model", "")),
        steps=int(data.get("steps") or 0),
        result=data.get("result"),
        error_code=data.get("error_code"),
        usage=dict(data.get("usage") or {}),
        data=dict(data),
    )


def _create_call(
    instruction: str,
    model: str | None,
    tools: Sequence[str] | None,
    granted: Sequence[str],
    budget: Mapping[str, Any] | None,
    tool_choice: str,
) -> Call:
    body: dict[str, Any] = {
        "instruction": instruction,
        "granted": list(granted),
        "tool_choice": tool_choice,
        "budget": dict(budget or {}),
    }
    if model is not None:
        body["model"] = model
    if tools is not None:
        body["tools"] = list(tools)
    return "POST", "/v1/tasks", body


def _list_call(status: str | None, limit: int) -> Call:
    query: dict[str, Any] = {"limit": limit}
    if status is not None:
        query["status"] = status
    return "GET", f"/v1/tasks?{urlencode(query)}", None


class Tasks:
    """Blocking access to ``/v1/tasks``."""

    def __init__(self, request: RequestFunction) -> None:
        self._request = request

    def create(
        self,
        instruction: str,
        *,
        model: str | None = None,
        tools: Sequence[str] | None = None,
        granted: Sequence[str] = (),
        budget: Mapping[str, Any] | None = None,
        tool_choice: str = "auto",
    ) -> Task:
        """Start a task; it runs in the server. ``budget``: max_steps, max_tokens, max_seconds."""
        call = _create_call(instruction, model, tools, granted, budget, tool_choice)
        return task_from_dict(self._request(*call))

    def list(self, *, status: str | None = None, limit: int = 50) -> builtins.list[Task]:
        return [task_from_dict(t) for t in self._request(*_list_call(status, limit))["data"]]

    def get(self, task_id: str) -> Task:
        return task_from_dict(self._request("GET", f"/v1/tasks/{task_id}", None))

    def steps(self, task_id: str) -> builtins.list[dict[str, Any]]:
        data: builtins.list[dict[str, Any]] = self._request(
            "GET", f"/v1/tasks/{task_id}/steps", None
        )["data"]
        return data

    def cancel(self, task_id: str) -> Task:
        return task_from_dict(self._request("POST", f"/v1/tasks/{task_id}/cancel", None))

    def approve(self, task_id: str, step: int) -> Task:
        path = f"/v1/tasks/{task_id}/steps/{step}/approve"
        return task_from_dict(self._request("POST", path, None))

    def deny(self, task_id: str, step: int) -> Task:
        return task_from_dict(self._request("POST", f"/v1/tasks/{task_id}/steps/{step}/deny", None))

    def wait(self, task_id: str, *, timeout: float = 600.0) -> Task:
        """The task once it is finished or waits for an approval."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if task.settled:
                return task
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(f"task {task_id} still {task.status} after {timeout:g} s")
            time.sleep(POLL_SECONDS)


class AsyncTasks:
    """Awaited access to ``/v1/tasks``."""

    def __init__(self, request: AsyncRequestFunction) -> None:
        self._request = request

    async def create(
        self,
        instruction: str,
        *,
        model: str | None = None,
        tools: Sequence[str] | None = None,
        granted: Sequence[str] = (),
        budget: Mapping[str, Any] | None = None,
        tool_choice: str = "auto",
    ) -> Task:
        call = _create_call(instruction, model, tools, granted, budget, tool_choice)
        return task_from_dict(await self._request(*call))

    async def list(self, *, status: str | None = None, limit: int = 50) -> builtins.list[Task]:
        answer = await self._request(*_list_call(status, limit))
        return [task_from_dict(t) for t in answer["data"]]

    async def get(self, task_id: str) -> Task:
        return task_from_dict(await self._request("GET", f"/v1/tasks/{task_id}", None))

    async def steps(self, task_id: str) -> builtins.list[dict[str, Any]]:
        answer = await self._request("GET", f"/v1/tasks/{task_id}/steps", None)
        data: builtins.list[dict[str, Any]] = answer["data"]
        return data

    async def cancel(self, task_id: str) -> Task:
        return task_from_dict(await self._request("POST", f"/v1/tasks/{task_id}/cancel", None))

    async def approve(self, task_id: str, step: int) -> Task:
        path = f"/v1/tasks/{task_id}/steps/{step}/approve"
        return task_from_dict(await self._request("POST", path, None))

    async def deny(self, task_id: str, step: int) -> Task:
        path = f"/v1/tasks/{task_id}/steps/{step}/deny"
        return task_from_dict(await self._request("POST", path, None))

    async def wait(self, task_id: str, *, timeout: float = 600.0) -> Task:
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get(task_id)
            if task.settled:
                return task
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(f"task {task_id} still {task.status} after {timeout:g} s")
            await asyncio.sleep(POLL_SECONDS)

"""``Client.workflows`` / ``AsyncClient.workflows``: the calling user's workflows
(``/v1/workflows``).

`Workflows` (blocking) and `AsyncWorkflows` (awaited) send the same request tuples:
`create` (YAML text, an ``llmasos.Workflow``, or the same structure as a mapping), `list`,
`get`, `delete`, `run` (by default answers once the run has finished or waits for a person),
`get_run` (a run with its trace), `answer`, `cancel` and `resume`. Runs are `WorkflowRun`
values; workflows and trace steps are the API's dicts.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

RequestFunction = Callable[[str, str, Any], Any]
AsyncRequestFunction = Callable[[str, str, Any], Awaitable[Any]]
Call = tuple[str, str, Any]
SETTLED = frozenset({"succeeded", "failed", "cancelled", "waiting"})


class _Definition(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


Source = str | Mapping[str, Any] | _Definition


@dataclass(frozen=True)
class WorkflowRun:
    id: str
    workflow: str
    status: str
    """``queued``, ``running``, ``waiting`` (a human node), ``succeeded``, ``failed`` or
    ``cancelled``."""
    output: Any = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    """The trace (when the API sent it): per node its status, inputs, output, model, usage,
    cost, attempts, error and timings."""
    usage: dict[str, Any] = field(default_factory=dict)
    """The run's tokens and cost over its steps (with the trace)."""
    waiting_for: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """The whole object as the API returned it."""

    @property
    def settled(self) -> bool:
        """Finished, or waiting for a person's answer."""
        return self.status in SETTLED


def run_from_dict(data: Mapping[str, Any]) -> WorkflowRun:
    return WorkflowRun(
        id=str(data["id"]),
        workflow=str(data.get("workflow", "")),
        status=str(data["status"]),
        output=data.get("output"),
        error=data.get("error"),
        steps=list(data.get("steps") or []),
        usage=dict(data.get("usage") or {}),
        waiting_for=list(data.get("waiting_for") or []),
        data=dict(data),
    )


def _create_call(source: Source, replace: bool) -> Call:
    body: dict[str, Any] = {"replace": replace}
    if isinstance(source, str):
        body["source"] = source
    elif isinstance(source, Mapping):
        body["definition"] = dict(source)
    else:
        body["definition"] = source.to_dict()
    return "POST", "/v1/workflows", body


def _name(name: str) -> str:
    return quote(name, safe="")


def _run_call(name: str, inputs: Mapping[str, Any] | None, wait: bool) -> Call:
    path = f"/v1/workflows/{_name(name)}/runs" + ("?wait=true" if wait else "")
    return "POST", path, {"input": dict(inputs or {})}


def _answer_call(run_id: str, node: str, answer: Any) -> Call:
    path = f"/v1/workflows/runs/{_name(run_id)}/nodes/{_name(node)}/answer"
    return "POST", path, {"answer": answer}


class Workflows:
    """Blocking access to ``/v1/workflows``."""

    def __init__(self, request: RequestFunction) -> None:
        self._request = request

    def create(self, source: Source, *, replace: bool = False) -> dict[str, Any]:
        """Store a workflow (checked as the CLI checks YAML: a 400 names the node and line);
        ``replace`` overwrites one of the same name. The API's workflow object."""
        created: dict[str, Any] = self._request(*_create_call(source, replace))
        return created

    def list(self) -> builtins.list[dict[str, Any]]:
        data: builtins.list[dict[str, Any]] = self._request("GET", "/v1/workflows", None)["data"]
        return data

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._request("GET", f"/v1/workflows/{_name(name)}", None)
        return found

    def delete(self, name: str) -> None:
        self._request("DELETE", f"/v1/workflows/{_name(name)}", None)

    def run(
        self, name: str, inputs: Mapping[str, Any] | None = None, *, wait: bool = True
    ) -> WorkflowRun:
        """Start a run; with ``wait`` (the default) the answer comes once it has finished or
        waits for a person, with its trace."""
        return run_from_dict(self._request(*_run_call(name, inputs, wait)))

    def get_run(self, run_id: str) -> WorkflowRun:
        """A run with its trace."""
        return run_from_dict(self._request("GET", f"/v1/workflows/runs/{_name(run_id)}", None))

    def answer(self, run_id: str, node: str, answer: Any) -> WorkflowRun:
        """Answer a waiting human node; the run goes on."""
        return run_from_dict(self._request(*_answer_call(run_id, node, answer)))

    def cancel(self, run_id: str) -> WorkflowRun:
        path = f"/v1/workflows/runs/{_name(run_id)}/cancel"
        return run_from_dict(self._request("POST", path, None))

    def resume(self, run_id: str) -> WorkflowRun:
        path = f"/v1/workflows/runs/{_name(run_id)}/resume"
        return run_from_dict(self._request("POST", path, None))


class AsyncWorkflows:
    """Awaited access to ``/v1/workflows``."""

    def __init__(self, request: AsyncRequestFunction) -> None:
        self._request = request

    async def create(self, source: Source, *, replace: bool = False) -> dict[str, Any]:
        created: dict[str, Any] = await self._request(*_create_call(source, replace))
        return created

    async def list(self) -> builtins.list[dict[str, Any]]:
        answer = await self._request("GET", "/v1/workflows", None)
        data: builtins.list[dict[str, Any]] = answer["data"]
        return data

    async def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._request("GET", f"/v1/workflows/{_name(name)}", None)
        return found

    async def delete(self, name: str) -> None:
        await self._request("DELETE", f"/v1/workflows/{_name(name)}", None)

    async def run(
        self, name: str, inputs: Mapping[str, Any] | None = None, *, wait: bool = True
    ) -> WorkflowRun:
        return run_from_dict(await self._request(*_run_call(name, inputs, wait)))

    async def get_run(self, run_id: str) -> WorkflowRun:
        path = f"/v1/workflows/runs/{_name(run_id)}"
        return run_from_dict(await self._request("GET", path, None))

    async def answer(self, run_id: str, node: str, answer: Any) -> WorkflowRun:
        return run_from_dict(await self._request(*_answer_call(run_id, node, answer)))

    async def cancel(self, run_id: str) -> WorkflowRun:
        path = f"/v1/workflows/runs/{_name(run_id)}/cancel"
        return run_from_dict(await self._request("POST", path, None))

    async def resume(self, run_id: str) -> WorkflowRun:
        path = f"/v1/workflows/runs/{_name(run_id)}/resume"
        return run_from_dict(await self._request("POST", path, None))

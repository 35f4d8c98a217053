"""Workflows over HTTP: bodies checked and shaped; the caller's user owns what they touch.

A definition is posted as YAML text (``{"source": "..."}``) or as the same structure in
JSON (``{"definition": {...}}``). Runs and steps are shaped into JSON objects (``object``:
``workflow``, ``workflow.run``, ``workflow.step``); a run's trace is its steps in order,
each with its ``cost`` (null while it runs or when its model has no price), and the run's
``usage`` totals them (``priced`` false when some finished step's cost is unknown).
Another user's workflow or run is a 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any

import yaml

from llmasos.errors import InvalidRequestError
from llmasos.server.openai.files.serving import current_user
from llmasos.workflows.store import RunRecord, StepRecord, StoredWorkflow
from llmasos.workflows.system import Workflows


def _time(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def workflow_json(stored: StoredWorkflow, builtin: bool, detail: bool = False) -> dict[str, Any]:
    workflow = stored.workflow()
    data: dict[str, Any] = {
        "object": "workflow",
        "id": stored.id,
        "name": stored.name,
        "description": workflow.description,
        "builtin": builtin,
        "nodes": len(workflow.nodes),
        "schedule": stored.schedule,
        "created_at": _time(stored.created_at),
        "updated_at": _time(stored.updated_at),
    }
    if detail:
        data["source"] = stored.source
        data["input_schema"] = workflow.input_schema()
        data["definition"] = workflow.to_dict()
        data["order"] = workflow.order
    return data


def step_json(step: StepRecord) -> dict[str, Any]:
    duration = None
    if step.finished_at is not None:
        duration = round((step.finished_at - step.started_at).total_seconds(), 4)
    return {
        "object": "workflow.step",
        "node": step.key,
        "type": step.node_type,
        "status": step.status,
        "inputs": step.inputs,
        "output": step.output,
        "error": step.error,
        "attempts": step.attempts,
        "model": step.model,
        "usage": {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens,
        },
        "cost": step.cost,
        "started_at": step.started_at.timestamp(),
        "finished_at": step.finished_at.timestamp() if step.finished_at else None,
        "duration_s": duration,
    }


def run_json(run: RunRecord, steps: list[StepRecord] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "workflow.run",
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status,
        "trigger": run.trigger,
        "input": run.inputs,
        "output": run.output,
        "error": run.error,
        "created_at": _time(run.created_at),
        "finished_at": _time(run.finished_at),
    }
    if steps is not None:
        data["steps"] = [step_json(s) for s in steps]
        data["waiting_for"] = [s.key for s in steps if s.status == "waiting"]
        data["usage"] = usage_json(steps)
    return data


def usage_json(steps: list[StepRecord]) -> dict[str, Any]:
    """The run's tokens and cost, summed over its steps (each map item and sub-workflow
    node is a step of its own; the map or workflow node itself uses none)."""
    prompt = sum(s.prompt_tokens for s in steps)
    completion = sum(s.completion_tokens for s in steps)
    finished = [s for s in steps if s.finished_at is not None]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": round(sum(s.cost or 0.0 for s in finished), 6),
        "priced": all(s.cost is not None for s in finished),
    }


class WorkflowsService:
    def __init__(self, workflows: Workflows) -> None:
        self.workflows = workflows
        self.store = workflows.store
        self.engine = workflows.engine

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        source = body.get("source")
        definition = body.get("definition")
        if definition is not None:
            if not isinstance(definition, dict):
                raise InvalidRequestError("definition must be an object", param="definition")
            source = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True)
        if not isinstance(source, str) or not source.strip():
            raise InvalidRequestError(
                "give the workflow as `source` (YAML text) or `definition` (an object)",
                param="source",
            )
        stored, token = self.store.create(
            current_user(), source, replace=bool(body.get("replace", False))
        )
        data = workflow_json(stored, False, detail=True)
        if token:
            data["hook_token"] = token
        return data

    def list(self) -> dict[str, Any]:
        found = self.workflows.list_workflows(current_user())
        return {"object": "list", "data": [workflow_json(w, b) for w, b in found]}

    def get(self, name: str) -> dict[str, Any]:
        stored = self.workflows.get(current_user(), name)
        return workflow_json(stored, stored.id.startswith("builtin:"), detail=True)

    def delete(self, name: str) -> dict[str, Any]:
        self.store.delete(current_user(), name)
        return {"object": "workflow.deleted", "name": name, "deleted": True}

    def start(self, name: str, body: Any, trigger: str = "manual") -> dict[str, Any]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        inputs = body.get("input", {})
        run = self.workflows.start(current_user(), name, inputs, trigger)
        return run_json(run)

    async def wait(self, run_id: str) -> dict[str, Any]:
        await self.engine.wait(run_id)
        return self.run(run_id)

    def runs(self, name: str | None) -> dict[str, Any]:
        user = current_user()
        if name is not None:
            self.workflows.get(user, name)
        return {"object": "list", "data": [run_json(r) for r in self.store.runs(user, name)]}

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.store.run(current_user(), run_id)
        return run_json(run, list(self.store.steps(run_id).values()))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return run_json(self.engine.cancel(current_user(), run_id))

    def resume(self, run_id: str) -> dict[str, Any]:
        return run_json(self.engine.resume(current_user(), run_id))

    def answer(self, run_id: str, node: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or "answer" not in body:
            raise InvalidRequestError('the body must be {"answer": ...}', param="answer")
        return run_json(self.engine.answer(current_user(), run_id, node, body["answer"]))

    def hook(self, name: str, token: str, body: Any) -> dict[str, Any]:
        stored = self.store.by_hook(name, token)
        inputs = body if isinstance(body, dict) else {}
        if isinstance(inputs.get("input"), dict):
            inputs = inputs["input"]
        run = self.engine.start(stored.user_id, stored.workflow(), inputs, "webhook")
        return run_json(run)

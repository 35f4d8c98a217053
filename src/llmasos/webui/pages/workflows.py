"""The workflows page: the caller's and the built-in workflows; a workflow's run form,
generated from its input schema; the live run view (re-fetched on each of the run's events
until it ends or waits) with the trace: each node's status, attempts, tokens and timing,
drawn as bars on one time axis; answers for waiting human nodes; cancel and resume.

All through ``/v1/workflows`` as the browser.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/workflows"
LIVE = frozenset({"queued", "running", "waiting"})


def input_of(schema: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The run's input from the generated form: each field read as its schema's type (an
    empty optional field is left out; a bad number or JSON is a 400 naming the field)."""
    values: dict[str, Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type", "string")
        raw = form.get(f"input.{name}", "")
        if kind == "boolean":
            values[name] = raw == "on"
            continue
        if raw.strip() == "":
            continue
        try:
            if kind == "integer":
                values[name] = int(raw)
            elif kind == "number":
                values[name] = float(raw)
            elif kind in ("array", "object"):
                values[name] = json.loads(raw)
            else:
                values[name] = raw
        except ValueError:
            raise ApiError(400, f"{name}: not a valid {kind}: {raw[:60]!r}") from None
    return values


def timeline(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step with ``offset`` and ``width`` in percent of the run's span, for the bars."""
    times = [
        (float(s["started_at"]), float(s.get("finished_at") or s["started_at"]))
        for s in steps
        if s.get("started_at") is not None
    ]
    if not times:
        return [{**s, "offset": 0.0, "width": 0.0} for s in steps]
    start = min(t[0] for t in times)
    span = max(max(t[1] for t in times) - start, 1e-6)
    bars = []
    for step in steps:
        begun = step.get("started_at")
        if begun is None:
            bars.append({**step, "offset": 0.0, "width": 0.0})
            continue
        ended = step.get("finished_at") or begun
        bars.append(
            {
                **step,
                "offset": round(100 * (begun - start) / span, 2),
                "width": max(round(100 * (ended - begun) / span, 2), 0.5),
            }
        )
    return bars


async def workflows_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    workflows = (await console.api.get(request, "/v1/workflows"))["data"]
    return console.render(
        request, "workflows/index.html", viewer=viewer, area="workflows", workflows=workflows
    )


async def workflow_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    name = quote(request.path_params["name"])
    workflow = await console.api.get(request, f"/v1/workflows/{name}")
    runs = (await console.api.get(request, f"/v1/workflows/{name}/runs"))["data"]
    return console.render(
        request,
        "workflows/workflow.html",
        viewer=viewer,
        area="workflows",
        workflow=workflow,
        schema=workflow.get("input_schema") or {},
        runs=runs[:20],
    )


async def start_run(request: Request) -> Response:
    console = console_of(request)
    await signed_in(request)
    form = await form_of(request)
    name = quote(request.path_params["name"])
    workflow = await console.api.get(request, f"/v1/workflows/{name}")
    body = {"input": input_of(workflow.get("input_schema") or {}, form)}
    run = await call(request, "POST", f"/v1/workflows/{name}/runs", form, json=body)
    return back(f"{PATH}/runs/{run['id']}")


async def run_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    run = await console.api.get(request, f"/v1/workflows/runs/{request.path_params['run_id']}")
    steps = timeline(run.get("steps") or [])
    return console.render(
        request,
        "workflows/run.html",
        viewer=viewer,
        area="workflows",
        run=run,
        steps=steps,
        total=sum(s.get("duration_s") or 0 for s in steps),
        live=run["status"] in LIVE,
    )


async def run_action(request: Request) -> Response:
    """Cancel or resume a run, or answer one of its human nodes."""
    await signed_in(request)
    form = await form_of(request)
    run_id, action = request.path_params["run_id"], request.path_params["action"]
    if action in ("cancel", "resume"):
        await call(request, "POST", f"/v1/workflows/runs/{run_id}/{action}", form)
    elif action == "answer":
        node = quote(text(form, "node"), safe="")
        body = {"answer": text(form, "answer")}
        await call(
            request, "POST", f"/v1/workflows/runs/{run_id}/nodes/{node}/answer", form, json=body
        )
    else:
        raise ApiError(404, f"no action {action[:40]!r}")
    return back(f"{PATH}/runs/{run_id}")


routes = [
    Route(PATH, workflows_page, methods=["GET"]),
    Route(PATH + "/runs/{run_id}", run_page, methods=["GET"]),
    Route(PATH + "/runs/{run_id}/{action}", run_action, methods=["POST"]),
    Route(PATH + "/{name}", workflow_page, methods=["GET"]),
    Route(PATH + "/{name}/runs", start_run, methods=["POST"]),
]

"""The tasks page: start a task, the caller's running and past tasks, the steps waiting for
approval with approve and deny, each task's step trace (while it runs, the page follows the
API's event stream and re-fetches the trace on each step change: ``static/pages.js``), and
the notification inbox.

All through ``/v1/tasks`` and ``/v1/notifications`` as the browser: approving is the API's
approve call, so the page can approve nothing the API would not (another user's task is
its 404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, number, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/tasks"
FINISHED = frozenset({"completed", "stopped", "failed", "cancelled"})


def waiting_step(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step a task waits on for approval, if any."""
    for step in steps:
        if step.get("status") == "waiting_approval":
            return step
    return None


async def steps_of(request: Request, task_id: str) -> list[dict[str, Any]]:
    found = await console_of(request).api.get(request, f"/v1/tasks/{task_id}/steps")
    return list(found["data"])


async def tasks_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    tasks = (await console.api.get(request, "/v1/tasks", limit=50))["data"]
    waiting = []
    for task in tasks:
        if task["status"] == "waiting_approval":
            waiting.append((task, waiting_step(await steps_of(request, task["id"]))))
    try:
        notifications = (await console.api.get(request, "/v1/notifications", limit=20))["data"]
    except ApiError:  # a key or role without the notifications scope: the rest still works
        notifications = []
    return console.render(
        request,
        "tasks/index.html",
        viewer=viewer,
        area="tasks",
        tasks=tasks,
        waiting=waiting,
        notifications=notifications,
    )


async def start_task(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    tools = [name.strip() for name in text(form, "tools").split(",") if name.strip()]
    body: dict[str, Any] = {
        "instruction": text(form, "instruction"),
        "tool_choice": text(form, "tool_choice") or "auto",
    }
    if tools:
        body["tools"] = tools
    steps = number(form, "max_steps")
    if steps is not None:
        body["budget"] = {"max_steps": steps}
    task = await call(request, "POST", "/v1/tasks", form, json=body)
    return back(f"{PATH}/{task['id']}")


async def task_page(request: Request) -> Response:
    """One task with its steps (while it runs, the page re-fetches ``#trace`` on each of the
    task's events)."""
    console = console_of(request)
    viewer = await signed_in(request)
    task_id = request.path_params["task_id"]
    task = await console.api.get(request, f"/v1/tasks/{task_id}")
    steps = await steps_of(request, task_id)
    return console.render(
        request,
        "tasks/task.html",
        viewer=viewer,
        area="tasks",
        task=task,
        steps=steps,
        waiting=waiting_step(steps),
        live=task["status"] not in FINISHED,
    )


async def decide(request: Request) -> Response:
    """Approve or deny a step, or cancel the task."""
    await signed_in(request)
    form = await form_of(request)
    task_id, action = request.path_params["task_id"], request.path_params["action"]
    if action in ("approve", "deny"):
        step = number(form, "step")
        await call(request, "POST", f"/v1/tasks/{task_id}/steps/{step}/{action}", form)
    elif action == "cancel":
        await call(request, "POST", f"/v1/tasks/{task_id}/cancel", form)
    else:
        raise ApiError(404, f"no action {action[:40]!r}")
    return back(text(form, "back") if text(form, "back") == PATH else f"{PATH}/{task_id}")


async def read_notifications(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    await call(request, "POST", "/v1/notifications/read", form, json={})
    return back(PATH)


routes = [
    Route(PATH, tasks_page, methods=["GET"]),
    Route(PATH, start_task, methods=["POST"]),
    Route(f"{PATH}/notifications/read", read_notifications, methods=["POST"]),
    Route(PATH + "/{task_id}", task_page, methods=["GET"]),
    Route(PATH + "/{task_id}/{action}", decide, methods=["POST"]),
]

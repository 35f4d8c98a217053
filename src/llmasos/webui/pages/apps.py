"""The app store page: installed apps (state, open, start, stop, logs, remove), the built-in
apps and installing from an index or an uploaded archive, always through the permission
review: the page shows what the app asks for, in words, and the confinement this machine
gives it, and only the confirm button installs (with the review's id, so the API refuses
an app that changed since it was reviewed).

Everyone signed in sees the installed apps and opens the running ones; the changes are the
API's admin-only ``/v1/apps`` calls, so a non-admin gets the API's 403. An app is opened at
``/app-store/NAME``: its routes (from ``GET /apps/NAME/``) as forms that call it through the
server's proxy at ``/apps/NAME/...``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/app-store"


async def store_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    installed = await console.api.get(request, "/v1/apps")
    builtins = await console.api.get(request, "/v1/apps/builtins")
    return console.render(
        request,
        "apps/index.html",
        viewer=viewer,
        area="apps",
        apps=installed["data"],
        builtins=builtins["data"],
    )


async def review_page(request: Request) -> Response:
    """What an app asks for, with the button that installs it (a POST: the review fetches
    the app, so it needs the form's CSRF token like any change)."""
    console = console_of(request)
    viewer = await signed_in(request)
    form = await form_of(request)
    source = text(form, "source")
    if text(form, "index") and text(form, "name"):
        source = f"{text(form, 'index')}#{text(form, 'name')}"
    review = await call(request, "POST", "/v1/apps/review", form, json={"source": source})
    return console.render(
        request, "apps/review.html", viewer=viewer, area="apps", review=review, source=source
    )


async def install(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    body = {"source": text(form, "source"), "review_id": text(form, "review_id")}
    installed = await call(request, "POST", "/v1/apps", form, json=body)
    return back(f"{PATH}#app-{installed['name']}")


async def change(request: Request) -> Response:
    """Start, stop or remove an app."""
    await signed_in(request)
    form = await form_of(request)
    name, action = request.path_params["name"], request.path_params["action"]
    if action == "remove":
        await call(request, "DELETE", f"/v1/apps/{quote(name)}", form)
    elif action in ("start", "stop"):
        await call(request, "POST", f"/v1/apps/{quote(name)}/{action}", form)
    else:
        raise ApiError(404, f"no action {action[:40]!r}")
    return back(PATH)


async def app_page(request: Request) -> Response:
    """An installed app: its state, logs (admins) and, while it runs, its routes as forms."""
    console = console_of(request)
    viewer = await signed_in(request)
    name = request.path_params["name"]
    app = await console.api.get(request, f"/v1/apps/{quote(name)}")
    routes: list[dict[str, Any]] = []
    if app["state"] == "running":
        index = await console.api.get(request, f"/apps/{quote(name)}/")
        routes = index.get("routes", []) if isinstance(index, dict) else []
    logs = None
    if viewer.is_admin:
        logs = (await console.api.get(request, f"/v1/apps/{quote(name)}/logs", lines=100))["lines"]
    return console.render(
        request, "apps/app.html", viewer=viewer, area="apps", app=app, routes=routes, logs=logs
    )


routes = [
    Route(PATH, store_page, methods=["GET"]),
    Route(f"{PATH}/review", review_page, methods=["POST"]),
    Route(f"{PATH}/install", install, methods=["POST"]),
    Route(PATH + "/{name}", app_page, methods=["GET"]),
    Route(PATH + "/{name}/{action}", change, methods=["POST"]),
]

"""The memory page: what the OS remembers about the signed-in user, editable and
forgettable, memory in chat on or off, a search, and recommendations.

Everything goes through ``/v1/memories`` and ``/v1/recommendations`` as the browser, so a user
sees and changes only their own memories (another user's id is the API's 404).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/memory"
KINDS = ("fact", "preference", "event", "document_note")


async def memory_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    query = request.query_params.get("q", "").strip()
    if query:
        found = await console.api.call(
            request, "POST", "/v1/memories/search", json={"query": query, "k": 20}
        )
    else:
        found = await console.api.get(request, "/v1/memories", limit=200)
    settings = await console.api.get(request, "/v1/memories/settings")
    return console.render(
        request,
        "memory/index.html",
        viewer=viewer,
        area="memory",
        memories=found.get("data", []),
        query=query,
        kinds=KINDS,
        settings=settings,
    )


async def recommendations(request: Request) -> Response:
    """The recommendations, fetched by the page once it has loaded: they embed every
    candidate's description (about 0.3 s here), which the page's first byte need not wait for."""
    console = console_of(request)
    viewer = await signed_in(request)
    try:
        recommended = await console.api.get(request, "/v1/recommendations", limit=5)
    except ApiError:  # recommendations are a hint; the page works without them
        recommended = {"data": []}
    return console.render(
        request,
        "memory/_recommendations.html",
        viewer=viewer,
        recommendations=recommended.get("data", []),
    )


async def add_memory(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    body = {"text": text(form, "text"), "kind": text(form, "kind") or "fact"}
    await call(request, "POST", "/v1/memories", form, json=body)
    return back(PATH)


async def edit_memory(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    memory_id = request.path_params["memory_id"]
    await call(
        request, "PATCH", f"/v1/memories/{memory_id}", form, json={"text": text(form, "text")}
    )
    return back(PATH)


async def forget_memory(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    await call(request, "DELETE", f"/v1/memories/{request.path_params['memory_id']}", form)
    return back(PATH)


async def memory_settings(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    await call(
        request, "POST", "/v1/memories/settings", form, json={"chat": form.get("chat") == "on"}
    )
    return back(PATH)


routes = [
    Route(PATH, memory_page, methods=["GET"]),
    Route(f"{PATH}/recommendations", recommendations, methods=["GET"]),
    Route(f"{PATH}/add", add_memory, methods=["POST"]),
    Route(f"{PATH}/settings", memory_settings, methods=["POST"]),
    Route(PATH + "/{memory_id}/edit", edit_memory, methods=["POST"]),
    Route(PATH + "/{memory_id}/forget", forget_memory, methods=["POST"]),
]

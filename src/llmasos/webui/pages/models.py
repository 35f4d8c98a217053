"""The models page: the store, pulling and creating models, the resident models, unloading.

The store and the resident models are rendered here from ``/api/tags`` and ``/api/ps``
(htmx refreshes them as fragments); a pull or a create streams its NDJSON progress from the
browser straight to ``/api/pull`` / ``/api/create`` (``static/models.js``); unloading is
``POST /api/generate`` with ``keep_alive: 0`` through the console, as Ollama clients do it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.api import CSRF_FIELD
from llmasos.webui.console import Console, Viewer, console_of


def size_label(size: int | None) -> str:
    """Bytes as a short human size (``1.3 GB``, ``270 MB``)."""
    if not size:
        return "–"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


async def _store(console: Console, request: Request) -> list[dict[str, Any]]:
    tags = await console.api.get(request, "/api/tags")
    models = sorted(tags.get("models", []), key=lambda m: str(m.get("name")))
    return [{**m, "size_label": size_label(m.get("size"))} for m in models]


async def _resident(console: Console, request: Request) -> list[dict[str, Any]]:
    running = await console.api.get(request, "/api/ps")
    return [
        {**m, "size_label": size_label(m.get("size")), "info": m.get("llmasos") or {}}
        for m in running.get("models", [])
    ]


async def _fragment(request: Request, viewer: Viewer, part: str) -> Response:
    console = console_of(request)
    context: dict[str, Any]
    if part == "store":
        context = {"store": await _store(console, request)}
    else:
        context = {"resident": await _resident(console, request)}
    return console.render(request, f"models/_{part}.html", viewer=viewer, **context)


async def models_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await console.require_viewer(request)
    return console.render(
        request,
        "models/index.html",
        viewer=viewer,
        area="models",
        store=await _store(console, request),
        resident=await _resident(console, request),
        can_write="models:write" in viewer.scopes,
    )


async def store_fragment(request: Request) -> Response:
    viewer = await console_of(request).require_viewer(request)
    return await _fragment(request, viewer, "store")


async def resident_fragment(request: Request) -> Response:
    viewer = await console_of(request).require_viewer(request)
    return await _fragment(request, viewer, "resident")


async def unload(request: Request) -> Response:
    """``POST /models/unload`` (``name``): the model leaves memory now; the resident list."""
    console = console_of(request)
    viewer = await console.require_viewer(request)
    form = await request.form()
    token = form.get(CSRF_FIELD)
    await console.api.call(
        request,
        "POST",
        "/api/generate",
        json={"model": str(form.get("name", "")), "keep_alive": 0},
        csrf_token=token if isinstance(token, str) else None,
    )
    return await _fragment(request, viewer, "resident")


routes = [
    Route("/models", models_page, methods=["GET"]),
    Route("/models/store", store_fragment, methods=["GET"]),
    Route("/models/resident", resident_fragment, methods=["GET"]),
    Route("/models/unload", unload, methods=["POST"]),
]

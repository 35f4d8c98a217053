"""The knowledge page: the caller's knowledge bases (vector stores); in one, its files with
live indexing progress (the table re-fetches itself every second while a file is being
indexed), upload (the browser posts the file to ``/v1/files`` and adds it to the store),
each file's chunks, readable, editable and disableable, a test search with its scores, and
the knowledge graph's status with a build button.

All through ``/v1/files`` and ``/v1/vector_stores`` as the browser (another user's store is
the API's 404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/knowledge"
RANKERS = ("auto", "bm25", "vector")


async def stores_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    stores = (await console.api.get(request, "/v1/vector_stores", limit=100))["data"]
    return console.render(
        request, "knowledge/index.html", viewer=viewer, area="knowledge", stores=stores
    )


async def create_store(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    store = await call(
        request, "POST", "/v1/vector_stores", form, json={"name": text(form, "name")}
    )
    return back(f"{PATH}/{store['id']}")


async def store_page(request: Request) -> Response:
    """A store: files and progress, upload, test search, graph. ``?part=files`` is the files
    table alone (what the page re-fetches while indexing runs)."""
    console = console_of(request)
    viewer = await signed_in(request)
    store_id = request.path_params["store_id"]
    store = await console.api.get(request, f"/v1/vector_stores/{store_id}")
    files = (await console.api.get(request, f"/v1/vector_stores/{store_id}/files", limit=100))[
        "data"
    ]
    indexing = any(f["status"] == "in_progress" for f in files)
    if request.query_params.get("part") == "files":
        return console.render(
            request, "knowledge/files.html", store=store, files=files, indexing=indexing
        )
    query = request.query_params.get("q", "").strip()
    ranker = request.query_params.get("ranker", "auto")
    results: list[dict[str, Any]] | None = None
    if query:
        body = {"query": query, "max_num_results": 10, "ranking_options": {"ranker": ranker}}
        found = await console.api.call(
            request, "POST", f"/v1/vector_stores/{store_id}/search", json=body,
            csrf_token=viewer.csrf_token,
        )  # fmt: skip
        results = found["data"]
    try:
        graph = await console.api.get(request, f"/v1/vector_stores/{store_id}/graph")
    except ApiError:  # no graph support: the page works without it
        graph = None
    return console.render(
        request,
        "knowledge/store.html",
        viewer=viewer,
        area="knowledge",
        store=store,
        files=files,
        indexing=indexing,
        query=query,
        ranker=ranker,
        rankers=RANKERS,
        results=results,
        graph=graph,
    )


async def chunks_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    store_id, file_id = request.path_params["store_id"], request.path_params["file_id"]
    store = await console.api.get(request, f"/v1/vector_stores/{store_id}")
    file = await console.api.get(request, f"/v1/vector_stores/{store_id}/files/{file_id}")
    chunks = await console.api.get(
        request, f"/v1/vector_stores/{store_id}/files/{file_id}/chunks", limit=1000
    )
    return console.render(
        request,
        "knowledge/chunks.html",
        viewer=viewer,
        area="knowledge",
        store=store,
        file=file,
        chunks=chunks["data"],
    )


async def edit_chunk(request: Request) -> Response:
    await signed_in(request)
    form = await form_of(request)
    store_id, chunk_id = request.path_params["store_id"], request.path_params["chunk_id"]
    if "disabled" in form:
        body: dict[str, Any] = {"disabled": form["disabled"] == "true"}
    else:
        body = {"text": form.get("text", "")}
    chunk = await call(
        request, "PATCH", f"/v1/vector_stores/{store_id}/chunks/{chunk_id}", form, json=body
    )
    return back(f"{PATH}/{store_id}/files/{chunk['file_id']}#{chunk_id}")


async def store_action(request: Request) -> Response:
    """Build the graph, remove a file, or delete the store."""
    await signed_in(request)
    form = await form_of(request)
    store_id, action = request.path_params["store_id"], request.path_params["action"]
    if action == "graph":
        await call(request, "POST", f"/v1/vector_stores/{store_id}/graph", form)
    elif action == "remove-file":
        await call(
            request, "DELETE", f"/v1/vector_stores/{store_id}/files/{text(form, 'file_id')}", form
        )
    elif action == "delete":
        await call(request, "DELETE", f"/v1/vector_stores/{store_id}", form)
        return back(PATH)
    else:
        raise ApiError(404, f"no action {action[:40]!r}")
    return back(f"{PATH}/{store_id}")


routes = [
    Route(PATH, stores_page, methods=["GET"]),
    Route(PATH, create_store, methods=["POST"]),
    Route(PATH + "/{store_id}", store_page, methods=["GET"]),
    Route(PATH + "/{store_id}/files/{file_id}", chunks_page, methods=["GET"]),
    Route(PATH + "/{store_id}/chunks/{chunk_id}", edit_chunk, methods=["POST"]),
    Route(PATH + "/{store_id}/do/{action}", store_action, methods=["POST"]),
]

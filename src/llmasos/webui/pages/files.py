"""The files page: the caller's semantic file space. Browse folders, open a file (text shown
as text, anything else offered as a download from the API), upload into the folder, find
files by meaning and words, see a file's history with the diff between versions, roll back
to any version, delete.

All through ``/v1/fs`` as the browser (another user's path is the API's 404); every change
is a new version, so nothing here loses data.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, number, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import console_of

PATH = "/files"
TEXT_TYPES = frozenset({"txt", "md", "html"})
MAX_SHOWN_CHARS = 200_000


def api_path(path: str) -> str:
    """``/notes/a.md`` as it goes into an API URL (each segment quoted)."""
    return "/".join(quote(part, safe="") for part in path.strip("/").split("/"))


def crumbs(folder: str) -> list[tuple[str, str]]:
    """``(name, path)`` of each folder from the root down to ``folder``."""
    parts = [p for p in folder.strip("/").split("/") if p]
    return [("/", "/")] + [(p, "/" + "/".join(parts[: i + 1])) for i, p in enumerate(parts)]


async def files_page(request: Request) -> Response:
    console = console_of(request)
    viewer = await signed_in(request)
    folder = "/" + request.query_params.get("path", "/").strip("/")
    query = request.query_params.get("q", "").strip()
    entries = (await console.api.call(request, "GET", "/v1/fs/list", params={"path": folder}))[
        "data"
    ]
    matches = None
    if query:
        found = await console.api.call(
            request, "POST", "/v1/fs/find", json={"query": query, "k": 20},
            csrf_token=viewer.csrf_token,
        )  # fmt: skip
        matches = found["data"]
    usage = await console.api.get(request, "/v1/fs/usage")
    return console.render(
        request,
        "files/index.html",
        viewer=viewer,
        area="files",
        folder=folder,
        crumbs=crumbs(folder),
        entries=entries,
        query=query,
        matches=matches,
        usage=usage,
    )


async def file_page(request: Request) -> Response:
    """One file: its content (a text file), its versions, and a diff of two of them."""
    console = console_of(request)
    viewer = await signed_in(request)
    path = "/" + request.query_params.get("path", "").strip("/")
    history = (await console.api.get(request, f"/v1/fs/history/{api_path(path)}"))["data"]
    current = history[0] if history else None
    content: str | None = None
    if current is not None and not current["deleted"] and current["type"] in TEXT_TYPES:
        body = await console.api.get(request, f"/v1/fs/files/{api_path(path)}")
        # the door parses a body that happens to be JSON; show the text either way
        content = body if isinstance(body, str) else "" if body is None else json.dumps(body)
    diff: dict[str, Any] | None = None
    older, newer = request.query_params.get("from"), request.query_params.get("to")
    if older and newer:
        diff = await console.api.get(
            request, f"/v1/fs/diff/{api_path(path)}", **{"from": older, "to": newer}
        )
    folder = "/" + path.strip("/").rpartition("/")[0]
    return console.render(
        request,
        "files/file.html",
        viewer=viewer,
        area="files",
        path=path,
        folder=folder,
        api_url="/v1/fs/files/" + api_path(path),
        history=history,
        current=current,
        content=content[:MAX_SHOWN_CHARS] if content is not None else None,
        diff=diff,
    )


async def file_action(request: Request) -> Response:
    """Roll back to a version, or delete the file."""
    await signed_in(request)
    form = await form_of(request)
    path, action = text(form, "path"), request.path_params["action"]
    if action == "rollback":
        body: dict[str, Any] = {"path": path}
        version = number(form, "to")
        if version is not None:
            body["to"] = version
        await call(request, "POST", "/v1/fs/rollback", form, json=body)
    elif action == "delete":
        await call(request, "DELETE", f"/v1/fs/files/{api_path(path)}", form)
    else:
        raise ApiError(404, f"no action {action[:40]!r}")
    return back(f"{PATH}/file?path={quote(path)}")


routes = [
    Route(PATH, files_page, methods=["GET"]),
    Route(f"{PATH}/file", file_page, methods=["GET"]),
    Route(PATH + "/do/{action}", file_action, methods=["POST"]),
]

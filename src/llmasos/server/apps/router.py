"""``/apps/NAME/PATH``: forwards a request to the running app NAME and streams its answer;
``/v1/apps``: the app manager (`apps_manager_router`, logic in `serving`).

The app's port comes from its ``run.json`` (`llmasos.apps.supervisor.running_state`), so
an app started with ``llmasos app start`` is reachable through the OS's own address and
authentication. The caller's ``Authorization`` and ``Cookie`` headers are not passed on:
third-party app code never sees a user's key; it has its own capability key. An app that
is not installed or not running is 404, one that does not answer is 502.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from llmasos.access.principal import Principal
from llmasos.apps.manifest import NAME_PATTERN
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import running_state
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, LLMasOSError, NotFoundError
from llmasos.server.apps.serving import AppsService
from llmasos.server.context import current_principal
from llmasos.server.uploads import read_upload

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
DROPPED_REQUEST_HEADERS = frozenset(
    {"authorization", "cookie", "host", "content-length", "connection", "transfer-encoding",
     "keep-alive", "upgrade", "te", "trailer", "proxy-authorization"}
)  # fmt: skip
DROPPED_RESPONSE_HEADERS = frozenset(
    {"content-length", "connection", "transfer-encoding", "keep-alive"}
)
PROXY_TIMEOUT = httpx.Timeout(10.0, read=600.0)


class AppUnreachableError(LLMasOSError):
    """A running app did not answer the proxied request (HTTP 502)."""

    status_code = 502
    default_code = "app_unreachable"


def apps_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    store = AppStore(settings.home)

    @router.api_route("/apps/{name}", methods=METHODS)
    async def app_root(name: str) -> Response:
        return RedirectResponse(f"/apps/{name}/", status_code=307)

    @router.api_route("/apps/{name}/{path:path}", methods=METHODS)
    async def proxy(name: str, path: str, request: Request) -> Response:
        state = (
            await run_in_threadpool(running_state, store, name)
            if NAME_PATTERN.fullmatch(name)
            else None
        )
        if state is None:
            raise NotFoundError(f"no running app named {name[:80]!r}", code="app_not_running")
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() not in DROPPED_REQUEST_HEADERS
        }
        headers["x-forwarded-prefix"] = f"/apps/{name}"
        client = httpx.AsyncClient(timeout=PROXY_TIMEOUT)
        upstream_request = client.build_request(
            request.method,
            f"{state.url}/{path}",
            params=request.url.query,
            headers=headers,
            content=await request.body(),
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as error:
            await client.aclose()
            raise AppUnreachableError(f"app {name} did not answer: {error}") from None

        async def close() -> None:
            await upstream.aclose()
            await client.aclose()

        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers={
                key: value
                for key, value in upstream.headers.items()
                if key.lower() not in DROPPED_RESPONSE_HEADERS
            },
            background=BackgroundTask(close),
        )

    return router


class InstallForm(BaseModel):
    """The fields beside an uploaded archive."""

    review_id: str | None = None


class InstallBody(BaseModel):
    source: str = Field(max_length=2048)
    review_id: str | None = Field(default=None, max_length=64)


def _caller() -> Principal:
    return current_principal() or Principal.local_owner()


async def _source(request: Request) -> tuple[str | None, bytes | None, str | None]:
    """``(source, uploaded archive, review_id)`` from a JSON body or a multipart upload."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        data, form = await read_upload(request, InstallForm)
        return None, data, form.review_id
    try:
        body = InstallBody.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
    return body.source, None, body.review_id


def apps_manager_router(service: AppsService) -> APIRouter:
    router = APIRouter(prefix="/v1/apps", tags=["apps"])

    @router.get("", summary="Installed apps and whether they run")
    def list_apps() -> dict[str, Any]:
        return {"object": "list", "data": service.installed_apps()}

    @router.get("/builtins", summary="The apps shipped with LLMasOS")
    def list_builtins() -> dict[str, Any]:
        return {"object": "list", "data": service.builtins()}

    @router.post("/review", summary="What an app asks for, before installing it (admin)")
    async def review(request: Request) -> dict[str, Any]:
        source, upload, _ = await _source(request)
        return await run_in_threadpool(service.review, _caller(), source, upload)

    @router.post("", status_code=201, summary="Install a reviewed app (admin)")
    async def install(request: Request) -> dict[str, Any]:
        source, upload, reviewed = await _source(request)
        if not reviewed:
            raise InvalidRequestError(
                "review the app's permissions first (POST /v1/apps/review) and send its review_id",
                param="review_id",
            )
        return await run_in_threadpool(service.install, _caller(), source, upload, reviewed)

    @router.get("/{name}", summary="One installed app")
    def get_app(name: str) -> dict[str, Any]:
        return service.get(name)

    @router.post("/{name}/start", summary="Start an app (admin)")
    async def start(name: str) -> dict[str, Any]:
        return await service.start(_caller(), name)

    @router.post("/{name}/stop", summary="Stop an app (admin)")
    async def stop(name: str) -> dict[str, Any]:
        return await service.stop(_caller(), name)

    @router.get("/{name}/logs", summary="The last lines of an app's log (admin)")
    async def logs(name: str, lines: Annotated[int, Query()] = 200) -> dict[str, Any]:
        tail = await run_in_threadpool(service.logs, _caller(), name, lines)
        return {"object": "app.logs", "name": name, "lines": tail}

    @router.delete("/{name}", summary="Stop and remove an app with its data (admin)")
    async def remove(name: str) -> dict[str, Any]:
        return await service.remove(_caller(), name)

    return router

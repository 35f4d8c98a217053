"""``/apps/NAME/PATH``: forwards a request to the running app NAME and streams its answer.

The app's port comes from its ``run.json`` (`llmasos.apps.supervisor.running_state`), so
an app started with ``llmasos app start`` is reachable through the OS's own address and
authentication. The caller's ``Authorization`` and ``Cookie`` headers are not passed on:
third-party app code never sees a user's key; it has its own capability key. An app that
is not installed or not running is 404, one that does not answer is 502.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from llmasos.apps.manifest import NAME_PATTERN
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import running_state
from llmasos.config import Settings
from llmasos.errors import LLMasOSError, NotFoundError

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

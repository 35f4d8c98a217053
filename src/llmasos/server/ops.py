"""Operational plumbing: health, root, metrics, and the request-id, body-size and JSON-body
middlewares (the app factory stacks them).

``GET /health`` answers 200 ``{"status": "ok"}`` once the kernel is ready and 503 before;
``GET /`` answers ``LLMasOS is running`` (as Ollama's root does, so clients probing for a
server find one), and sends a browser to the web console; ``GET /metrics`` is the kernel's
Prometheus registry in text format.
Every response carries ``X-Request-ID`` (the client's, or a new one), and log records made
while serving a request carry it as ``record.request_id``. Bodies over the size limit are
refused with 413 before they reach a route.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.console import console_home, wants_console
from llmasos.server.context import request_id_var
from llmasos.server.errors import error_response

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
REQUEST_ID_HEADER = "X-Request-ID"


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isprintable() and value.isascii()


class RequestIdMiddleware:
    """Echo or assign ``X-Request-ID`` and expose it to logs through a context variable."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope.get("headers", []):
            if key.lower() == b"x-request-id":
                given = value.decode("latin-1").strip()
        request_id = given if _valid_request_id(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def is_multipart(scope: Scope) -> bool:
    """A ``multipart/form-data`` body (a file upload): it streams on to its route, never
    buffered or rewritten by a middleware."""
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"multipart/form-data")
        for name, value in scope.get("headers", [])
    )


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, before any route runs."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        streamed: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed
        """Exact paths whose route reads the body as a stream under its own limit (uploads):
        passed through untouched."""

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            scope.get("path", ""),
            413,
            f"request body is larger than the limit of {self.max_bytes} bytes",
            code="request_too_large",
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.streamed:
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read the body here, up to the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class JsonBodyMiddleware:
    """Read request bodies under ``/api`` and ``/v1`` as JSON whatever their Content-Type.

    Ollama does (``curl -d '{...}'`` sends form encoding), and clients rely on it. A
    ``multipart/form-data`` body (a file upload) keeps its type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path.startswith("/api/") or path.startswith("/v1/")):
            if is_multipart(scope):
                await self.app(scope, receive, send)
                return
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def ops_router(engine: EngineClientInterface) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/", response_class=PlainTextResponse, summary="Liveness")
    async def root(request: Request) -> Response:
        if wants_console(request):  # a browser: the console's start page
            return console_home()
        return PlainTextResponse("LLMasOS is running")

    @router.head("/", include_in_schema=False)
    async def root_head() -> Response:
        return Response(media_type="text/plain")

    @router.get(
        "/health",
        summary="Readiness",
        responses={503: {"description": "The kernel is still starting"}},
    )
    async def health(request: Request) -> JSONResponse:
        if engine.is_ready():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        registry = engine.metrics_registry or CollectorRegistry()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router

"""`Application`: typed HTTP routes around a model, served by uvicorn.

``@app.route(path)`` registers a handler; its parameters are typed by its signature and
filled from the query string (GET) or a JSON object body (POST) — see `llmasos.sdk.params`. A
missing, unknown or invalid parameter answers 422 with a JSON body naming it and why. Sync
handlers run in a thread pool (the `LLM` methods block), async handlers are awaited.
Return values become: ``str`` -> text/plain; ``bytes`` -> application/octet-stream;
``None`` -> 204; a pydantic model, dict, list, number or bool -> JSON; a starlette
``Response`` -> itself; an iterator or async iterator (e.g. ``model.stream(q)``) -> a
streamed text/plain body, chunk by chunk. An `LLMasOSError` raised by a handler answers
with its status and the usual ``{"error": {...}}`` body; any other exception answers 500.

``app.asgi`` is the FastAPI app (for tests and mounting); ``GET /`` lists the routes and
``GET /health`` answers ``{"status": "ok"}``. ``app.run()`` serves on 127.0.0.1:8080 unless
``host``/``port`` or ``LLMASOS_APP_HOST``/``LLMASOS_APP_PORT`` say otherwise, blocks, and
returns after SIGINT/SIGTERM; a non-loopback host needs ``allow_remote=True``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from llmasos.errors import ConfigError, InvalidRequestError, LLMasOSError
from llmasos.net import is_loopback, uvicorn_server
from llmasos.sdk.params import HandlerParameters, ParameterError

if TYPE_CHECKING:
    from llmasos.sdk.llm import LLM

logger = logging.getLogger("llmasos.apps")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
"""Not 8000, so an app and ``llmasos serve`` run side by side with their defaults."""
HOST_ENV = "LLMASOS_APP_HOST"
PORT_ENV = "LLMASOS_APP_PORT"
RESERVED_PATHS = frozenset({"/", "/health"})
ALLOWED_METHODS = frozenset({"GET", "POST"})

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Route:
    """One registered route."""

    path: str
    methods: tuple[str, ...]
    handler: Callable[..., Any]
    parameters: HandlerParameters

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "methods": list(self.methods),
            "name": getattr(self.handler, "__name__", None),
            "description": inspect.getdoc(self.handler),
            "parameters": self.parameters.schema(),
        }


def _error_response(error: LLMasOSError) -> JSONResponse:
    body = error.to_body() if isinstance(error, ParameterError) else error.to_openai()
    return JSONResponse(body, status_code=error.status_code)


def _encode_chunk(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    return (json.dumps(jsonable_encoder(chunk)) + "\n").encode()


async def _encoded(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield _encode_chunk(chunk)


def to_response(result: Any) -> Response:
    """The HTTP response for a handler's return value (see the module docstring)."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status_code=204)
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, bytes | bytearray):
        return Response(bytes(result), media_type="application/octet-stream")
    if isinstance(result, BaseModel):
        return JSONResponse(result.model_dump(mode="json"))
    if isinstance(result, AsyncIterator):
        return StreamingResponse(_encoded(result), media_type="text/plain; charset=utf-8")
    if isinstance(result, Iterator):
        chunks = iterate_in_threadpool(result)  # a blocking iterator, e.g. LLM.stream
        return StreamingResponse(_encoded(chunks), media_type="text/plain; charset=utf-8")
    return JSONResponse(jsonable_encoder(result))


class Application:
    """An HTTP application: typed routes, usually around one `LLM`."""

    def __init__(self, model: LLM | None = None, *, name: str | None = None) -> None:
        self.model = model
        self.name = name or "llmasos-app"
        self.routes: list[Route] = []
        self.asgi = FastAPI(title=self.name, docs_url=None, redoc_url=None, openapi_url=None)
        self.asgi.add_api_route("/", self._index, methods=["GET"])
        self.asgi.add_api_route("/health", self._health, methods=["GET"])

    @property
    def fastapi(self) -> FastAPI:
        """The same ASGI app as `asgi`, by its framework's name."""
        return self.asgi

    def __repr__(self) -> str:
        return f"Application({self.name!r}, routes={[r.path for r in self.routes]})"

    # --- routes -----------------------------------------------------------------------------

    def route(
        self, path: str, methods: Iterable[str] = ("GET", "POST")
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of ``path``; it stays callable."""
        if not path.startswith("/"):
            raise InvalidRequestError(f"a route path starts with '/': {path!r}")
        if path.rstrip("/") in {p.rstrip("/") for p in RESERVED_PATHS}:
            raise InvalidRequestError(f"{path} is reserved (the route list and the health check)")
        chosen = tuple(dict.fromkeys(method.upper() for method in methods))
        unknown = set(chosen) - ALLOWED_METHODS
        if unknown or not chosen:
            raise InvalidRequestError(
                f"route {path}: methods must be GET and/or POST, not {sorted(unknown) or '()'}"
            )
        taken = [m for r in self.routes if r.path == path for m in r.methods if m in chosen]
        if taken:
            raise InvalidRequestError(f"route {path} already has a {taken[0]} handler")

        def register(handler: Handler) -> Handler:
            route = Route(path, chosen, handler, HandlerParameters.of(handler))
            self.routes.append(route)
            self.asgi.add_api_route(
                path, self._endpoint(route), methods=list(chosen), name=handler.__name__
            )
            return handler

        return register

    def _endpoint(self, route: Route) -> Callable[[Request], Any]:
        handler, parameters = route.handler, route.parameters

        async def endpoint(request: Request) -> Response:
            try:
                if request.method == "GET":
                    query: dict[str, list[str]] = {}
                    for key, value in request.query_params.multi_items():
                        query.setdefault(key, []).append(value)
                    query.update({k: [str(v)] for k, v in request.path_params.items()})
                    arguments = parameters.from_query(query)
                else:
                    arguments = parameters.from_body(await request.body(), request.path_params)
                arguments.update(dict.fromkeys(parameters.request_names, request))
                if inspect.iscoroutinefunction(handler):
                    result = await handler(**arguments)
                elif inspect.isasyncgenfunction(handler):
                    result = handler(**arguments)
                else:
                    result = await run_in_threadpool(handler, **arguments)
                if inspect.isawaitable(result):
                    result = await result
                return to_response(result)
            except LLMasOSError as error:
                if error.status_code >= 500:
                    logger.error("%s %s failed: %s", request.method, route.path, error)
                return _error_response(error)
            except Exception:
                logger.exception("%s %s failed", request.method, route.path)
                return JSONResponse(
                    LLMasOSError(f"the handler of {route.path} failed").to_openai(),
                    status_code=500,
                )

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return endpoint

    async def _index(self) -> dict[str, Any]:
        return {"name": self.name, "routes": [route.describe() for route in self.routes]}

    async def _health(self) -> dict[str, str]:
        return {"status": "ok"}

    # --- serving ----------------------------------------------------------------------------

    def run(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        allow_remote: bool = False,
        log_level: str = "info",
    ) -> None:
        """Serve until SIGINT/SIGTERM. Defaults: ``LLMASOS_APP_HOST``/``LLMASOS_APP_PORT``,
        then 127.0.0.1:8080. A non-loopback host needs ``allow_remote=True``."""
        host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
        port = _resolve_port(port)
        if not allow_remote and not is_loopback(host):
            raise ConfigError(
                f"refusing to serve the app on {host}: anyone who can reach it could use it "
                "and its model. Pass allow_remote=True to app.run(), or bind to 127.0.0.1"
            )
        server = uvicorn_server(self.asgi, host=host, port=port, log_level=log_level)
        logger.info("%s listening on http://%s:%d", self.name, host, port)
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
            server.run()
        if not server.started:
            raise LLMasOSError(f"could not start {self.name} on {host}:{port} (port in use?)")


def _resolve_port(port: int | None) -> int:
    if port is None:
        raw = os.environ.get(PORT_ENV)
        if raw is None:
            return DEFAULT_PORT
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"{PORT_ENV}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range (0-65535)")
    return port

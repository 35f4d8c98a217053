"""The web console's place in the server: every path outside the API's own.

The console (`llmasos.webui`, a face beside this one) is found through the plugin registry
(`PluginRegistry.console`) and mounted after every API route, so the API keeps its paths: a
path whose first segment is one of `API_SEGMENTS` is never the console's (an unknown
``/v1/...`` stays the API's 404 in the API's error shape). Console pages check the browser's
session themselves by calling ``/auth/session`` through the API, so the auth middleware lets
console paths through (`is_console_path`). If the console cannot be loaded (its plugin
failed, a package is missing), the API serves as before and the console's paths answer one
readable line saying what is missing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from llmasos.config import Settings
from llmasos.errors import LLMasOSError
from llmasos.plugins import get_registry

logger = logging.getLogger(__name__)

API_SEGMENTS = frozenset(
    {"", "v1", "api", "auth", "admin", "apps", "mcp", "metrics", "health", "docs", "redoc",
     "openapi.json"}
)  # fmt: skip
"""First path segments that belong to the API (``""`` is ``/``, the liveness answer)."""


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the console's rather than the API's."""
    return path.lstrip("/").split("/", 1)[0] not in API_SEGMENTS


class ConsoleMount(Mount):
    """``Mount("/")`` that never matches an API path, so those keep the API's 404 and 405."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def _unavailable(reason: str) -> ASGIApp:
    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            f"The web console is not available: {reason}. The API serves as usual.\n",
            status_code=503,
        )
        await response(scope, receive, send)

    return answer


def mount_console(app: FastAPI, settings: Settings) -> bool:
    """Mount the registered console after the API routes; False when it could not load."""
    try:
        factory = get_registry().console()
        console = factory(app, settings)
        loaded = True
    except (LLMasOSError, ImportError) as error:
        reason = error.message if isinstance(error, LLMasOSError) else str(error)
        logger.warning("the web console is not available: %s", reason)
        console, loaded = _unavailable(reason), False
    app.router.routes.append(ConsoleMount("/", app=console, name="console"))
    app.state.console = loaded
    return loaded


def wants_console(request: Request) -> bool:
    """A browser asking for ``/`` (it accepts HTML) with a console mounted."""
    accepts_html = "text/html" in request.headers.get("accept", "")
    return accepts_html and bool(getattr(request.app.state, "console", False))


def console_home() -> Response:
    """Where a browser at ``/`` goes: the console's start page."""
    return RedirectResponse("/chat", status_code=303)

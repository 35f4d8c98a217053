"""`create_console`: the console as an ASGI app the server mounts on every non-API path.

It holds the frame (`llmasos.webui.session`: sign in, first run, language), the pages of
`llmasos.webui.pages`, and the static files under ``/static/<version>/`` (the version is a
digest of their contents, so they are cached for a year and a change is a new URL). Pages
are gzip-compressed. A page that needs a signed-in user and finds none redirects to sign in
(or to the first run while no user exists); an API refusal is shown as a page with the API's
own message and status (403 for a non-admin on an admin page), never a traceback.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.config import Settings
from llmasos.webui import session
from llmasos.webui.api import ApiError, ConsoleApi
from llmasos.webui.console import Console, SignInRequired, console_of
from llmasos.webui.pages import load_pages

STATIC_MAX_AGE = 365 * 86400


class CachedStatic:
    """Static files with ``Cache-Control: public, max-age=<a year>, immutable``."""

    def __init__(self) -> None:
        self.files = StaticFiles(packages=[("llmasos.webui", "static")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"cache-control"]
                headers.append(
                    (b"cache-control", f"public, max-age={STATIC_MAX_AGE}, immutable".encode())
                )
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, send_cached)


async def _sign_in_first(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    console = console_of(request)
    target = "/setup" if await console.setup_needed(request) else "/sign-in"
    if target == "/sign-in" and error.next_path not in ("/", session.HOME):
        target += f"?next={quote(error.next_path)}"
    if request.headers.get("hx-request"):  # htmx: a full-page redirect, not a fragment
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _api_refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    console = console_of(request)
    status = error.status if 400 <= error.status < 600 else 502
    if request.headers.get("hx-request"):
        return console.render(
            request, "partials/error.html", status_code=status, message=error.message
        )
    viewer = await console.viewer(request) if status != 401 else None
    return console.render(
        request, "error.html", viewer=viewer, status_code=status, message=error.message
    )


async def _not_found(request: Request, error: Exception) -> Response:
    console = console_of(request)
    viewer = await console.viewer(request)
    t_key = "error.not_found"
    return console.render(request, "error.html", viewer=viewer, status_code=404, message_key=t_key)


def create_console(api: ASGIApp, settings: Settings) -> ASGIApp:
    """The console over the API app ``api`` (called in process with the browser's session)."""
    pages, page_routes = load_pages()
    console = Console(ConsoleApi(api), settings, pages)
    app = Starlette(
        routes=[
            Mount(f"/static/{console.version}", app=CachedStatic(), name="static"),
            *session.routes,
            *page_routes,
        ],
        middleware=[Middleware(GZipMiddleware, minimum_size=800)],
        exception_handlers={
            SignInRequired: _sign_in_first,
            ApiError: _api_refused,
            404: _not_found,
        },
    )
    app.state.console = console
    return app

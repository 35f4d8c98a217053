"""The frame's own pages: sign in, first run, the language switch.

Signing in, the first run and signing out are done by the browser itself against the API
(``POST /auth/sign-in``, ``/auth/setup``, ``/auth/sign-out`` with JSON bodies, see
``static/console.js``): the API sets and clears the HttpOnly session cookie, and since it
takes only JSON, another site's form cannot sign a browser in or out. These pages only show
the forms, and send a browser that is already signed in (or, without ``--auth``, the local
owner) on to where it was going. The language switch sets the ``llmasos_lang`` cookie.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from llmasos.webui.console import console_of
from llmasos.webui.i18n import LANGUAGE_COOKIE, LANGUAGES

HOME = "/chat"


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return HOME
    return value


async def sign_in_page(request: Request) -> Response:
    console = console_of(request)
    next_path = safe_next(request.query_params.get("next"))
    if await console.viewer(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    if await console.setup_needed(request):
        return RedirectResponse("/setup", status_code=303)
    return console.render(request, "auth/sign_in.html", next_path=next_path)


async def setup_page(request: Request) -> Response:
    console = console_of(request)
    if await console.viewer(request) is not None or not await console.setup_needed(request):
        return RedirectResponse("/sign-in", status_code=303)
    return console.render(request, "auth/setup.html", next_path=HOME)


async def switch_language(request: Request) -> Response:
    """``/language/zh?next=/chat``: remember the choice for a year and go back."""
    language = request.path_params["language"]
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if language in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 86400, samesite="lax", path="/"
        )
    return response


async def home(request: Request) -> Response:
    return RedirectResponse(HOME, status_code=303)


routes = [
    Route("/sign-in", sign_in_page, methods=["GET"]),
    Route("/setup", setup_page, methods=["GET"]),
    Route("/language/{language}", switch_language, methods=["GET"]),
    Route("/console", home, methods=["GET"]),
]

"""What every page handler shares: who is signed in, the templates, the API door.

`Console` lives in the console app's state (`console_of(request)`). `Console.viewer` asks the
API's ``/auth/session`` with the browser's cookie; a page that needs a signed-in user calls
`Console.require_viewer`, which raises `SignInRequired` (answered with a redirect to the
first-run page while no user exists, else to the sign-in page). `Console.render` renders a
template with the frame's context: ``t`` (the request's language), ``viewer``, ``nav`` (the
pages this viewer may open), ``csrf_token`` and ``static()`` (versioned asset URLs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from llmasos import __version__
from llmasos.config import Settings
from llmasos.webui.api import ApiError, ConsoleApi
from llmasos.webui.i18n import LANGUAGES, language_of, translator
from llmasos.webui.markdown import render_markdown

if TYPE_CHECKING:  # the pages import this module
    from llmasos.webui.pages import Page

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every page: scripts only from our own static files (so even text that slipped through
as HTML could not run), no framing, no caching of a signed-in page."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in user as ``/auth/session`` describes them."""

    name: str
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    csrf_token: str | None = None
    auth: bool = True
    """False: authentication is off and this is the machine's owner (no sign-out)."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes


class SignInRequired(Exception):
    """No one is signed in; ``next`` is where to come back to."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def static_version() -> str:
    """A short digest of the static files, so their URLs change whenever they do."""
    digest = hashlib.sha256(__version__.encode())
    root = resources.files("llmasos.webui").joinpath("static")
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                stack.append(entry)
            else:
                digest.update(entry.name.encode())
                digest.update(entry.read_bytes())
    return digest.hexdigest()[:12]


class Console:
    """The console's shared parts: settings, pages, templates and the API door."""

    def __init__(self, api: ConsoleApi, settings: Settings, pages: list[Page]) -> None:
        self.api = api
        self.settings = settings
        self.pages = pages
        self.version = static_version()
        self.templates = Environment(
            loader=PackageLoader("llmasos.webui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["markdown"] = render_markdown
        self.templates.globals["static"] = self.static_url
        self.templates.globals["languages"] = LANGUAGES

    def static_url(self, path: str) -> str:
        return f"/static/{self.version}/{path}"

    async def viewer(self, request: Request) -> Viewer | None:
        """Who is signed in (None: no one), asking the API once per request."""
        if "viewer" in request.scope.get("state", {}):
            cached: Viewer | None = request.state.viewer
            return cached
        try:
            session = await self.api.get(request, "/auth/session")
        except ApiError as error:
            if error.status not in (401, 403):
                raise
            session = None
        viewer = None
        if isinstance(session, dict) and isinstance(session.get("user"), dict):
            user = session["user"]
            viewer = Viewer(
                name=str(user.get("name")),
                role=str(user.get("role")),
                scopes=frozenset(user.get("scopes") or ()),
                csrf_token=session.get("csrf_token"),
                auth=bool(session.get("auth")),
            )
        request.state.viewer = viewer
        return viewer

    async def require_viewer(self, request: Request) -> Viewer:
        viewer = await self.viewer(request)
        if viewer is None:
            raise SignInRequired(request.url.path)
        return viewer

    async def setup_needed(self, request: Request) -> bool:
        state = await self.api.get(request, "/auth/setup")
        return bool(isinstance(state, dict) and state.get("needed"))

    def nav(self, viewer: Viewer | None) -> list[Page]:
        if viewer is None:
            return []
        return [p for p in self.pages if viewer.is_admin or not p.admin_only]

    def render(
        self,
        request: Request,
        template: str,
        *,
        viewer: Viewer | None = None,
        status_code: int = 200,
        area: str = "",
        **context: Any,
    ) -> HTMLResponse:
        """``template`` with the frame's context, as an HTML response with security headers."""
        language = language_of(request)
        html = self.templates.get_template(template).render(
            request=request,
            t=translator(language),
            lang=language,
            viewer=viewer,
            nav=self.nav(viewer),
            area=area,
            csrf_token=(viewer.csrf_token if viewer else None) or "",
            here=quote(request.url.path + (f"?{request.url.query}" if request.url.query else "")),
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console

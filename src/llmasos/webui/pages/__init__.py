"""The console's pages: one entry per area, in nav order, and the loading of their routes.

Each area is a module ``llmasos.webui.pages.<area>`` exposing ``routes`` (Starlette routes)
or ``router`` (a FastAPI ``APIRouter``), with templates in ``templates/<area>/`` extending
``base.html``. An area whose module is not there (yet) is left out of the nav; the list stays
the one place that says what the console has and in which order. Page paths must not start
with a segment the API owns (``/v1``, ``/api``, ``/admin``, ``/apps`` …:
`llmasos.server.console.API_SEGMENTS`, checked by a test), which is why the app store is
``/app-store`` and the administration ``/administration``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute


@dataclass(frozen=True)
class Page:
    """One area of the console."""

    area: str
    """Module name under ``llmasos.webui.pages`` and template folder."""
    path: str
    """Where the nav links to."""
    label: str
    """Locale key of the nav label."""
    admin_only: bool = False
    """Shown (and served) only to admins."""


PAGES: tuple[Page, ...] = (
    Page("chat", "/chat", "nav.chat"),
    Page("memory", "/memory", "nav.memory"),
    Page("knowledge", "/knowledge", "nav.knowledge"),
    Page("files", "/files", "nav.files"),
    Page("apps", "/app-store", "nav.apps"),
    Page("tasks", "/tasks", "nav.tasks"),
    Page("workflows", "/workflows", "nav.workflows"),
    Page("models", "/models", "nav.models"),
    Page("admin", "/administration", "nav.admin", admin_only=True),
)


def _routes_of(module: Any) -> list[BaseRoute]:
    routes = getattr(module, "routes", None)
    if routes is not None:
        return list(routes)
    router = getattr(module, "router", None)
    return list(router.routes) if router is not None else []


def load_pages() -> tuple[list[Page], list[BaseRoute]]:
    """The pages whose module exists, and all their routes."""
    present: list[Page] = []
    routes: list[BaseRoute] = []
    for page in PAGES:
        name = f"{__name__}.{page.area}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:  # the module is there but needs something missing
                raise
            continue
        present.append(page)
        routes.extend(_routes_of(module))
    return present, routes

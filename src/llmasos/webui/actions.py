"""What the pages' actions share: read a posted form, make the API call it asks for with the
form's CSRF token, and go back to the page.

An action answers ``303`` to the page it came from, so a plain form post reloads the page and
an htmx post (which follows the redirect) swaps in the fresh part it selects. A refusal
from the API is an `ApiError`, which the console shows with the API's own message.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from llmasos.webui.api import CSRF_FIELD, ApiError
from llmasos.webui.console import Viewer, console_of


async def form_of(request: Request) -> dict[str, str]:
    """The posted fields (text fields only; the last value of a repeated name)."""
    form = await request.form()
    try:
        return {key: value for key, value in form.items() if isinstance(value, str)}
    finally:
        await form.close()


async def call(
    request: Request,
    method: str,
    path: str,
    form: dict[str, str],
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """The API's answer to ``method path`` made with the form's CSRF token."""
    return await console_of(request).api.call(
        request, method, path, json=json, params=params, csrf_token=form.get(CSRF_FIELD)
    )


def back(location: str) -> Response:
    """Back to a page after a change (``303``: the browser GETs it)."""
    return RedirectResponse(location, status_code=303)


async def signed_in(request: Request) -> Viewer:
    return await console_of(request).require_viewer(request)


def text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


def number(form: dict[str, str], name: str) -> int | None:
    """An optional whole number from a form field (empty: None; anything else: a 400)."""
    value = text(form, name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {value[:40]!r}") from None

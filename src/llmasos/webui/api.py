"""The console's one door to the data: the HTTP API, called in process as the browser.

`ConsoleApi.call` sends a request to the API app through ``httpx.ASGITransport`` (no socket),
carrying the browser's ``Cookie`` and, for changes, its ``X-CSRF-Token``, so the API's auth
middleware, scopes, quotas and audit log treat it exactly like the browser calling itself. A
refusal or failure comes back as `ApiError` with the API's status and readable message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
"""A plain form carries the token in this field; the console forwards it as the header."""
CALL_TIMEOUT = httpx.Timeout(120.0)


@dataclass
class ApiError(Exception):
    """The API refused or failed: its HTTP status, message and error code."""

    status: int
    message: str
    code: str | None = None

    def __str__(self) -> str:
        return self.message


def error_of(response: httpx.Response) -> ApiError:
    """The `ApiError` an error response carries, in either dialect (OpenAI or Ollama)."""
    message, code = response.reason_phrase or f"HTTP {response.status_code}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code")
        elif isinstance(error, str):
            message = error
    return ApiError(response.status_code, message, code)


class ConsoleApi:
    """Calls to the API app on behalf of one browser request."""

    def __init__(self, api: ASGIApp) -> None:
        self._transport = httpx.ASGITransport(app=api)

    def _headers(self, request: Request, csrf_token: str | None) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if cookie := request.headers.get("cookie"):
            headers["cookie"] = cookie
        token = request.headers.get(CSRF_HEADER) or csrf_token
        if token:
            headers[CSRF_HEADER] = token
        return headers

    async def call(
        self,
        request: Request,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        csrf_token: str | None = None,
    ) -> Any:
        """The JSON the API answers (None for an empty body); `ApiError` for a 4xx/5xx.

        ``csrf_token`` is a token the browser sent in a form field; a token in the request's
        own ``X-CSRF-Token`` header (htmx sends one) wins."""
        async with httpx.AsyncClient(
            transport=self._transport, base_url="http://console", timeout=CALL_TIMEOUT
        ) as client:
            response = await client.request(
                method,
                path,
                json=json,
                params=params,
                headers=self._headers(request, csrf_token),
            )
        if response.status_code >= 400:
            raise error_of(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    async def get(self, request: Request, path: str, **params: Any) -> Any:
        return await self.call(
            request, "GET", path, params={k: v for k, v in params.items() if v is not None}
        )

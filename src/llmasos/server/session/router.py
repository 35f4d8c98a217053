"""``/auth/*``: sign in to the web console with a password, see the session, sign out.

The console's pages call the same API as every other client; a signed-in browser carries
the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) instead of an API key, and
sends the session's CSRF token in ``X-CSRF-Token`` with every change
(`llmasos.server.auth`). These routes are open (the auth middleware lets ``/auth/`` through)
and check the cookie themselves. Bodies are JSON only: a form on another site cannot post
JSON without the browser asking this server first (CORS), so it cannot sign a browser in or
out. With authentication off (loopback), the caller is the local owner and needs no session.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from llmasos.access.principal import Principal
from llmasos.access.sessions import (
    CSRF_HEADER,
    IDLE_TIMEOUT,
    SESSION_COOKIE,
    SessionInfo,
    SessionManager,
    check_credentials,
)
from llmasos.errors import InvalidRequestError, PermissionDeniedError


def _user(principal: Principal) -> dict[str, Any]:
    return {"name": principal.name, "role": principal.role, "scopes": sorted(principal.scopes)}


def _session_body(info: SessionInfo) -> dict[str, Any]:
    return {
        "object": "session",
        "auth": True,
        "user": _user(info.principal),
        "csrf_token": info.csrf_token,
        "expires_at": int(info.expires_at.timestamp()),
    }


async def _credentials(request: Request) -> tuple[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidRequestError("send the credentials as JSON (Content-Type: application/json)")
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise InvalidRequestError("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object with name and password")
    return check_credentials(body.get("name"), body.get("password"))


def _set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(IDLE_TIMEOUT.total_seconds()) * 14,  # the server ends it sooner
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def session_router(sessions: SessionManager | None) -> APIRouter:
    """The routes; ``sessions`` None means authentication is off (the local owner)."""
    router = APIRouter(tags=["console session"])

    @router.get("/auth/session", summary="Who is signed in, and the CSRF token")
    async def current(request: Request) -> dict[str, Any]:
        if sessions is None:
            return {"object": "session", "auth": False, "user": _user(Principal.local_owner()),
                    "csrf_token": None, "expires_at": None}  # fmt: skip
        token = request.cookies.get(SESSION_COOKIE)
        info = await anyio.to_thread.run_sync(sessions.verify, token)
        return _session_body(info)

    @router.get("/auth/setup", summary="Whether the first-run page is needed")
    async def setup_state() -> dict[str, Any]:
        needed = sessions is not None and await anyio.to_thread.run_sync(sessions.setup_needed)
        return {"object": "setup", "needed": needed}

    @router.post("/auth/setup", summary="First run: create the admin and sign in")
    async def setup(request: Request) -> JSONResponse:
        if sessions is None:
            raise PermissionDeniedError(
                "authentication is off: this server has no users to set up (serve with --auth)",
                code="auth_off",
            )
        name, password = await _credentials(request)
        token, info = await anyio.to_thread.run_sync(sessions.first_admin, name, password)
        response = JSONResponse(_session_body(info), status_code=201)
        _set_cookie(response, request, token)
        return response

    @router.post("/auth/sign-in", summary="Sign in with a user name and password")
    async def sign_in(request: Request) -> JSONResponse:
        if sessions is None:
            raise PermissionDeniedError(
                "authentication is off: you are the local owner already", code="auth_off"
            )
        name, password = await _credentials(request)
        token, info = await anyio.to_thread.run_sync(sessions.sign_in, name, password)
        response = JSONResponse(_session_body(info))
        _set_cookie(response, request, token)
        return response

    @router.post("/auth/sign-out", summary="End this browser's session")
    async def sign_out(request: Request) -> JSONResponse:
        response = JSONResponse({"object": "session", "signed_out": True})
        if sessions is None:
            return response
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            info = await anyio.to_thread.run_sync(sessions.verify, token)
            if not info.csrf_ok(request.headers.get(CSRF_HEADER)):
                raise PermissionDeniedError(
                    "signing out needs the session's X-CSRF-Token header", code="csrf_failed"
                )
            await anyio.to_thread.run_sync(sessions.sign_out, token)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router

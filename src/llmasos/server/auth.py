"""Authentication at the HTTP boundary: who is calling, and may they do this.

With ``auth`` off (loopback only; ``serve`` refuses other addresses), every request runs as
the machine's owner and the OpenAI ``user`` field names the tenant. With ``auth`` on, every
endpoint but ``/health`` needs ``Authorization: Bearer llmos-…``: the key is verified for the
scope the endpoint needs and for the model the body names, and the key's user becomes the
tenant the kernel schedules fairly. A browser signed in to the console instead carries the
session cookie (`llmasos.access.sessions`); its calls that change anything (any method but
GET, HEAD and OPTIONS) must also carry the session's ``X-CSRF-Token`` header, which another
site's page cannot read or forge. The web console's own paths
(`llmasos.server.console.is_console_path`) and ``/`` (which sends a browser there) pass
through: each page asks the API who is signed in, and everything it shows or changes goes
through the API and this check. A refusal is 401 or 403 in the endpoint family's error
shape, and lands in the audit log. The principal and the models the body names go into the
request's context (`llmasos.server.context`); the app factory stacks
`llmasos.server.metering.QuotaMiddleware` right inside this one.
"""

from __future__ import annotations

import json
import logging
import re
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.access.keys import KeyManager
from llmasos.access.principal import Principal
from llmasos.access.sessions import CSRF_HEADER, SESSION_COOKIE, SessionManager
from llmasos.errors import LLMasOSError, PermissionDeniedError
from llmasos.server.console import is_console_path
from llmasos.server.context import PRINCIPAL_STATE, REQUESTED_MODELS_STATE, principal_var
from llmasos.server.errors import llmasos_error_response
from llmasos.server.ops import is_multipart

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})
OPEN_PREFIXES = ("/v1/fs/shared/", "/auth/")
"""Share links: the token in the path is the capability, so no key is asked for. ``/auth/``
(sign-in, sign-out, the first-run setup) checks the session cookie itself."""
OPEN_PATTERNS = (re.compile(r"/v1/workflows/[^/]+/hooks/[^/]+"),)
"""Workflow webhooks: the token in the path is the capability (a wrong one is a 404)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# (method or "*", path prefix) -> scope; the first match wins.
SCOPE_RULES: tuple[tuple[str, str, str], ...] = (
    ("*", "/v1/chat/completions", "chat"),
    ("*", "/api/chat", "chat"),
    ("*", "/v1/completions", "generate"),
    ("*", "/api/generate", "generate"),
    ("*", "/v1/embeddings", "embed"),
    ("*", "/api/embed", "embed"),
    ("*", "/v1/services", "chat"),
    ("*", "/v1/responses", "chat"),
    ("*", "/v1/conversations", "chat"),
    ("*", "/v1/memories", "memory"),
    ("*", "/v1/recommendations", "memory"),
    ("*", "/v1/audio", "perception"),
    ("*", "/v1/ocr", "perception"),
    ("*", "/v1/fs", "files"),
    ("*", "/v1/notes", "notes"),
    ("*", "/v1/calendar", "calendar"),
    ("*", "/v1/reminders", "calendar"),
    ("*", "/v1/notifications", "notifications"),
    ("*", "/v1/outbox", "mail"),
    ("*", "/v1/tasks", "tasks"),
    ("*", "/v1/files", "knowledge"),
    ("*", "/v1/vector_stores", "knowledge"),
    ("*", "/v1/mcp", "mcp"),
    ("*", "/mcp", "mcp"),
    ("*", "/v1/workflows", "workflows"),
    ("*", "/api/pull", "models:write"),
    ("*", "/api/create", "models:write"),
    ("*", "/api/copy", "models:write"),
    ("DELETE", "/api/delete", "models:write"),
    ("*", "/metrics", "admin"),
    ("POST", "/v1/apps", "admin"),  # install, review, start, stop (reading: everyone)
    ("DELETE", "/v1/apps", "admin"),
    ("*", "/admin/keys", "models:read"),  # everyone manages their own keys
    ("*", "/admin", "admin"),
)
MODEL_FIELDS = ("model", "name", "source")


def scope_for(method: str, path: str) -> str:
    if path.startswith("/v1/services/"):  # one named service: its own scope
        return "services:" + path[len("/v1/services/") :].split("/", 1)[0]
    for rule_method, prefix, scope in SCOPE_RULES:
        if (rule_method in ("*", method)) and path.startswith(prefix):
            return scope
    return "models:read"


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else None
    return None


def header(scope: Scope, wanted: str) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == wanted.encode():
            return str(value.decode("latin-1"))
    return None


def session_cookie(scope: Scope) -> str | None:
    """The console's session token from the Cookie header, if any."""
    raw = header(scope, "cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(SESSION_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def models_named(body: bytes) -> list[str]:
    """Model names a JSON body refers to (``model``, ``name``, ``source`` ...)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    names = [data.get(field) for field in MODEL_FIELDS]
    if isinstance(data.get("destination"), str):
        names.append(data["destination"])
    return [n for n in names if isinstance(n, str) and n]


class AuthMiddleware:
    """Verifies the API key (or the console session) of every request but the open paths
    (only when auth is on)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyManager,
        default_model: str,
        sessions: SessionManager | None = None,
        console: bool = False,
    ) -> None:
        self.app = app
        self.console = console
        self.keys = keys
        self.default_model = default_model
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or (self.console and (is_console_path(scope["path"]) or scope["path"] == "/"))
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
            or any(p.fullmatch(scope["path"]) for p in OPEN_PATTERNS)
        ):
            await self.app(scope, receive, send)
            return
        body = b""
        if not is_multipart(scope):  # an upload streams on to its route, never buffered here
            body, receive = await _buffer_body(receive)
        needed = scope_for(scope["method"], scope["path"])
        # perception engines (whisper-1, tts-1 ...) are not store models to allow-list
        named = [] if needed == "perception" else models_named(body)
        if not named and (needed in ("chat", "generate") or needed.startswith("services:")):
            named = [self.default_model]
        try:
            principal = self.principal(scope, needed)
            for model in named:
                principal.require(model=model)
        except LLMasOSError as error:
            self._audit_denial(scope, error)
            response = llmasos_error_response(scope["path"], error)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[REQUESTED_MODELS_STATE] = named
        scope["state"][PRINCIPAL_STATE] = principal
        token = principal_var.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            principal_var.reset(token)

    def principal(self, scope: Scope, needed: str) -> Principal:
        """The caller, allowed ``needed``: by API key, else by console session."""
        token = bearer_token(scope)
        cookie = session_cookie(scope) if token is None and self.sessions else None
        if cookie is None or self.sessions is None:
            return self.keys.verify(token, scope=needed)
        session = self.sessions.verify(cookie)
        if scope["method"] not in SAFE_METHODS and not session.csrf_ok(header(scope, CSRF_HEADER)):
            raise PermissionDeniedError(
                "this change needs the console session's X-CSRF-Token header",
                code="csrf_failed",
            )
        session.principal.require(scope=needed)
        return session.principal

    def _audit_denial(self, scope: Scope, error: LLMasOSError) -> None:
        try:
            self.keys.audit.record(
                "request.denied",
                target=f"{scope['method']} {scope['path']}"[:255],
                outcome="denied",
                detail=f"{error.status_code}: {error.message}"[:1000],
            )
        except Exception:  # the refusal stands even if the audit write fails
            logger.exception("could not write the audit entry for a denied request")


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body (already size-limited) and a `receive` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay

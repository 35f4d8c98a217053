"""Authentication at the HTTP boundary: who is calling, and may they do this.

With ``auth`` off (loopback only; ``serve`` refuses other addresses), every request runs as
the machine's owner and the OpenAI ``user`` field names the tenant. With ``auth`` on, every
endpoint but ``/health`` needs ``Authorization: Bearer llmos-…``: the key is verified for the
scope the endpoint needs and for the model the body names, and the key's user becomes the
tenant the kernel schedules fairly. A refusal is 401 or 403 in the endpoint family's error
shape, and lands in the audit log. The principal and the models the body names go into the
request's context (`llmasos.server.context`); the app factory stacks
`llmasos.server.metering.QuotaMiddleware` right inside this one.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.access.keys import KeyManager
from llmasos.errors import LLMasOSError
from llmasos.server.context import REQUESTED_MODELS_STATE, principal_var
from llmasos.server.errors import llmasos_error_response

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})

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
    ("*", "/api/pull", "models:write"),
    ("*", "/api/create", "models:write"),
    ("*", "/api/copy", "models:write"),
    ("DELETE", "/api/delete", "models:write"),
    ("*", "/metrics", "admin"),
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
    """Verifies the API key of every request but the open paths (only when auth is on)."""

    def __init__(self, app: ASGIApp, keys: KeyManager, default_model: str) -> None:
        self.app = app
        self.keys = keys
        self.default_model = default_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        body, receive = await _buffer_body(receive)
        needed = scope_for(scope["method"], scope["path"])
        named = models_named(body)
        if not named and (needed in ("chat", "generate") or needed.startswith("services:")):
            named = [self.default_model]
        try:
            principal = self.keys.verify(bearer_token(scope), scope=needed)
            for model in named:
                principal.require(model=model)
        except LLMasOSError as error:
            self._audit_denial(scope, error)
            response = llmasos_error_response(scope["path"], error)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[REQUESTED_MODELS_STATE] = named
        token = principal_var.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            principal_var.reset(token)

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

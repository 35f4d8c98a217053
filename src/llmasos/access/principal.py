"""Who a request runs as, and what that identity may do.

A `Principal` is what authentication produces and what the kernel sees as the tenant. Its
scopes are the key's scopes cut down to what the user's role allows *now*, so demoting a
user limits their existing keys on the next request. An empty model allow-list means every
model. `Principal.local_owner()` is the identity of the machine's owner when authentication
is off (loopback only).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from llmasos.errors import InvalidRequestError, PermissionDeniedError

ROLES: Final = ("admin", "developer", "user", "pending")
SCOPES: Final = {
    "chat": "chat completions (/v1/chat/completions, /api/chat)",
    "generate": "text completions (/v1/completions, /api/generate)",
    "embed": "embeddings (/v1/embeddings, /api/embed)",
    "tokenize": "tokenize and detokenize",
    "models:read": "list and show models",
    "models:write": "pull, create, copy and delete models",
    "memory": "the key's user's long-term memory and recommendations (/v1/memories ...)",
    "perception": "speech to text, text to speech and OCR (/v1/audio/*, /v1/ocr)",
    "files": "the key's user's file space (/v1/fs ...); files:/DIR reaches one directory only",
    "knowledge": "the key's user's files and vector stores (/v1/files, /v1/vector_stores)",
    "tasks": "agent tasks of the key's user (/v1/tasks): run, watch, approve, kill",
    "notes": "the key's user's notes (/v1/notes) and the notes tools",
    "calendar": "the key's user's calendar events and reminders and their tools",
    "mail": "send mail as the key's user and read their outbox (/v1/outbox) and inbox",
    "notifications": "the key's user's notification inbox (/v1/notifications)",
    "workflows": "the key's user's workflows and their runs (/v1/workflows)",
    "mcp": "the key's user's MCP servers, and LLMasOS as an MCP server (/mcp)",
    "code": "run Python in a sandbox (the python_run tool, workflows' code nodes)",
    "admin": "users, keys of others, quotas, usage and audit of everyone",
}
ALL_SCOPES: Final = "*"
ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(SCOPES),
    "developer": frozenset(SCOPES) - {"admin"},
    "user": frozenset(
        {
            "chat",
            "generate",
            "embed",
            "tokenize",
            "models:read",
            "memory",
            "perception",
            "files",
            "knowledge",
            "tasks",
            "notes",
            "calendar",
            "mail",
            "notifications",
            "mcp",
            "workflows",
        }
    ),
    "pending": frozenset(),
}
LOCAL_OWNER = "local"
SERVICE_SCOPE_PREFIX: Final = "services:"
"""``services:NAME`` allows one named service, ``services:*`` all of them; ``chat`` (what
services ran under before these scopes existed) allows them all too. Roles that may chat
may hold them."""
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}|\*")
FILES_SCOPE_PREFIX: Final = "files:"
"""``files:/DIR`` reaches one directory of the user's file space (apps get these from their
manifest's ``files`` permission); ``files`` reaches all of it."""
_FILES_DIR = re.compile(r"/([^/\x00-\x1f\x7f]{1,255}(/[^/\x00-\x1f\x7f]{1,255})*)?")


def is_service_scope(scope: str) -> bool:
    return scope.startswith(SERVICE_SCOPE_PREFIX) and bool(
        _SERVICE_NAME.fullmatch(scope[len(SERVICE_SCOPE_PREFIX) :])
    )


def is_files_scope(scope: str) -> bool:
    if not scope.startswith(FILES_SCOPE_PREFIX):
        return False
    directory = scope[len(FILES_SCOPE_PREFIX) :]
    return (
        bool(_FILES_DIR.fullmatch(directory))
        and ".." not in directory.split("/")
        and len(directory) <= 1024
    )


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequestError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """Validate scope names; ``*`` means everything the role allows."""
    result: list[str] = []
    for scope in scopes:
        if (
            scope != ALL_SCOPES
            and scope not in SCOPES
            and not is_service_scope(scope)
            and not is_files_scope(scope)
        ):
            raise InvalidRequestError(
                f"unknown scope {scope[:80]!r}; use *, services:NAME, files:/DIR or one of "
                f"{', '.join(SCOPES)}",
                param="scopes",
            )
        if scope not in result:
            result.append(scope)
    return result or [ALL_SCOPES]


def effective_scopes(role: str, key_scopes: Iterable[str]) -> frozenset[str]:
    allowed = ROLE_SCOPES.get(role, frozenset())
    wanted = set(key_scopes)
    if ALL_SCOPES in wanted:
        return allowed
    services = {s for s in wanted if is_service_scope(s)} if "chat" in allowed else set()
    directories = {s for s in wanted if is_files_scope(s)} if "files" in allowed else set()
    return (allowed & wanted) | services | directories


def model_allowed(model: str, patterns: Iterable[str]) -> bool:
    """Whether ``model`` matches the allow-list (empty: all). ``smollm2`` allows every tag."""
    patterns = list(patterns)
    if not patterns:
        return True
    base = model.split(":", 1)[0]
    return any(
        fnmatch.fnmatchcase(model, pattern) or (":" not in pattern and base == pattern)
        for pattern in patterns
    )


@dataclass(frozen=True)
class Principal:
    """An authenticated identity: the tenant of every request it makes."""

    user_id: int | None
    name: str
    role: str
    key_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    models: tuple[str, ...] = ()

    @classmethod
    def local_owner(cls) -> Principal:
        """The machine's owner when authentication is off: an admin without a key."""
        return cls(user_id=None, name=LOCAL_OWNER, role="admin", scopes=ROLE_SCOPES["admin"])

    @property
    def tenant(self) -> str:
        """The name the kernel's fair-share scheduler accounts this principal under."""
        return self.name

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes

    def allows_scope(self, scope: str) -> bool:
        if scope in self.scopes:
            return True
        if scope == "files":  # directory scopes reach the endpoints; the paths are checked there
            return any(s.startswith(FILES_SCOPE_PREFIX) for s in self.scopes)
        wildcard = {"chat", "services:*"} & self.scopes
        return scope.startswith(SERVICE_SCOPE_PREFIX) and bool(wildcard)

    def allows_model(self, model: str) -> bool:
        return model_allowed(model, self.models)

    def require(self, scope: str | None = None, model: str | None = None) -> None:
        """Raise `PermissionDeniedError` (403) unless this principal may do it."""
        who = f"key {self.key_id}" if self.key_id else f"user {self.name}"
        if scope is not None and not self.allows_scope(scope):
            raise PermissionDeniedError(
                f"{who} lacks the scope {scope!r} (role {self.role})", code="missing_scope"
            )
        if model is not None and not self.allows_model(model):
            raise PermissionDeniedError(
                f"{who} may not use the model {model[:200]!r}", code="model_not_allowed"
            )

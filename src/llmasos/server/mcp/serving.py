"""The MCP parts of the server: the caller's registered servers, and the ``/mcp`` endpoint.

`McpService` opens the database, the cipher and the tool system once, when first needed,
and runs store calls in a worker thread. `McpEndpoint` is the SDK's streamable HTTP session
manager (stateless, JSON responses: every POST is answered on its own, so the caller is
decided per request, never per session) over `llmasos.tools.mcp.server.build_server`; its
``run`` must be entered for the app's lifetime (`create_app` does it in the lifespan). The
caller is the principal `AuthMiddleware` verified for this request (scope ``mcp``), or the
machine's owner with authentication off.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.types import Receive, Scope, Send

from llmasos.access.principal import Principal
from llmasos.config import Settings
from llmasos.errors import AuthenticationError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import PRINCIPAL_STATE, principal_var
from llmasos.services.runner import ServiceRunner
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.tools.interface import ToolSystem
from llmasos.tools.mcp.server import McpExposure, build_server
from llmasos.tools.mcp.servers import McpServerStore

T = TypeVar("T")


class McpService:
    """The store of registered servers and the tool system, opened on first use."""

    def __init__(
        self,
        settings: Settings,
        engine: EngineClientInterface,
        database: Callable[[], Database],
        runner: ServiceRunner | None = None,
        **parts: Any,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._database = database
        self.runner = runner
        self._parts = parts
        self._store: McpServerStore | None = None
        self._system: ToolSystem | None = None
        self._lock = threading.Lock()

    def store(self) -> McpServerStore:
        with self._lock:
            if self._store is None:
                self._store = McpServerStore(
                    self._database(), ContentCipher.from_settings(self.settings)
                )
            return self._store

    def system(self) -> ToolSystem:
        with self._lock:
            if self._system is None:
                self._system = ToolSystem(
                    settings=self.settings,
                    database=self._database(),
                    engine=self.engine,
                    **self._parts,
                )
            return self._system

    async def run(self, work: Callable[[McpServerStore], T]) -> T:
        store = await anyio.to_thread.run_sync(self.store)
        return await anyio.to_thread.run_sync(lambda: work(store))


def current_user_id() -> int | None:
    principal = principal_var.get()
    return principal.user_id if principal is not None else None


class McpEndpoint:
    """``/mcp``: the SDK's streamable HTTP transport, as an ASGI app."""

    def __init__(self, service: McpService, *, auth: bool, host: str) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        self.service = service
        self.auth = auth
        server = build_server(McpExposure(service.system, service.runner), self.principal_of)
        loopback = host in ("127.0.0.1", "localhost", "::1")
        security = TransportSecuritySettings(
            # a browser page must not reach the owner's tools through DNS rebinding; with
            # authentication on, the key is the guard and any host name may be used
            enable_dns_rebinding_protection=loopback and not auth,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        self.manager = StreamableHTTPSessionManager(
            app=server, stateless=True, json_response=True, security_settings=security
        )

    def principal_of(self, ctx: Any) -> Principal:
        request = getattr(ctx, "request", None)
        state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
        principal = state.get(PRINCIPAL_STATE)
        if isinstance(principal, Principal):
            return principal
        if self.auth:
            raise AuthenticationError("this MCP request carries no verified API key")
        return Principal.local_owner()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)

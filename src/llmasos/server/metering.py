"""Quotas, usage metering and model-change auditing at the HTTP boundary.

`QuotaMiddleware` runs right inside `AuthMiddleware` (the app factory stacks them), so it
only acts on authenticated requests. For a generation or embedding request it takes a slot
under the principal's quotas (`QuotaManager.admit`; past a limit: 429 in the endpoint
family's error shape with ``Retry-After``), sets a `UsageRecorder`
(`llmasos.server.context`), and, when the response has finished (or the client went away),
gives the concurrent slot back, charges the tokens the serving code reported
(`report_usage`) and writes one usage row. Model pulls, creations, copies and deletions are
written to the audit log with the principal and the outcome.

Database work runs in worker threads so a slow write never stalls the event loop; the
release and the usage write are shielded from cancellation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.access.audit import AuditLog
from llmasos.access.principal import Principal
from llmasos.access.quotas import Admission, QuotaManager
from llmasos.access.usage import UsageLog
from llmasos.errors import LLMasOSError
from llmasos.server.context import (
    UsageRecorder,
    current_principal,
    requested_models,
    usage_recorder_var,
)
from llmasos.server.errors import llmasos_error_response
from llmasos.storage.database import Database

logger = logging.getLogger(__name__)

METERED_PREFIXES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/services",
    "/v1/responses",
    "/v1/memories",
    "/api/generate",
    "/api/chat",
    "/api/embed",
)
MODEL_ACTIONS = {
    "/api/pull": "model.pull",
    "/api/create": "model.create",
    "/api/copy": "model.copy",
    "/api/delete": "model.delete",
}
CLIENT_GONE = 499


def is_metered(path: str) -> bool:
    # Reading or deleting a stored response (/v1/responses/{id}) generates nothing.
    return path.startswith(METERED_PREFIXES) and not path.startswith("/v1/responses/")


class QuotaMiddleware:
    """Enforces quotas and meters usage of authenticated inference requests."""

    def __init__(self, app: ASGIApp, database: Database) -> None:
        self.app = app
        self.quotas = QuotaManager(database)
        self.usage = UsageLog(database)
        self.audit = AuditLog(database)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = current_principal()
        path = scope.get("path", "")
        if scope["type"] != "http" or principal is None:
            await self.app(scope, receive, send)
            return
        if path in MODEL_ACTIONS:
            await self._audited(scope, receive, send, principal, MODEL_ACTIONS[path])
            return
        if not is_metered(path):
            await self.app(scope, receive, send)
            return
        try:
            admission = await anyio.to_thread.run_sync(self.quotas.admit, principal)
        except LLMasOSError as error:
            response = llmasos_error_response(path, error)
            await response(scope, receive, send)
            return
        await self._metered(scope, receive, send, principal, admission)

    async def _metered(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, admission: Admission
    ) -> None:
        recorder = UsageRecorder()
        status = CLIENT_GONE
        settled = False
        started = time.monotonic()
        requested = next(iter(requested_models(scope)), "")

        async def settle(final_status: int) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            latency_ms = int((time.monotonic() - started) * 1000)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    self._settle, principal, admission, recorder, scope["path"], requested,
                    latency_ms, final_status,
                )  # fmt: skip

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await settle(status)  # before the client sees the end: read-your-writes
            await send(message)

        token = usage_recorder_var.set(recorder)
        try:
            await self.app(scope, receive, watch)
        finally:
            usage_recorder_var.reset(token)
            await settle(CLIENT_GONE)  # no-op unless the response never finished

    def _settle(
        self,
        principal: Principal,
        admission: Admission,
        recorder: UsageRecorder,
        path: str,
        requested: str,
        latency_ms: int,
        status: int,
    ) -> None:
        """Give back the slot, charge the tokens, write the usage row; log, never raise."""
        steps: tuple[Callable[[], None], ...] = (
            lambda: self.quotas.release(admission),
            lambda: self.quotas.charge(
                admission, recorder.prompt_tokens + recorder.completion_tokens
            ),
            lambda: self.usage.record(
                principal,
                model=recorder.model or requested or "-",
                endpoint=path,
                prompt_tokens=recorder.prompt_tokens,
                completion_tokens=recorder.completion_tokens,
                latency_ms=latency_ms,
                status=status,
            ),
        )
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("could not settle the usage of %s %s", principal.name, path)

    async def _audited(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, action: str
    ) -> None:
        recorded = False
        target = " -> ".join(requested_models(scope)) or "-"

        async def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "error")
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    self._record_model_action, principal, action, target, outcome, status
                )

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                await record(int(message["status"]))  # recorded before the client hears back
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            await record(CLIENT_GONE)

    def _record_model_action(
        self, principal: Principal, action: str, target: str, outcome: str, status: int
    ) -> None:
        try:
            self.audit.record(
                action, actor=principal, target=target, outcome=outcome, detail=f"HTTP {status}"
            )
        except Exception:
            logger.exception("could not audit %s of %s", action, target)

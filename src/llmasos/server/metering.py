"""Quotas, usage metering and model-change auditing at the HTTP boundary.

`QuotaMiddleware` runs right inside `AuthMiddleware` (which builds it), so it only sees
authenticated requests. For a generation or embedding request it takes a slot under the
principal's quotas (`QuotaManager.admit`; past a limit: 429 in the endpoint family's error
shape with ``Retry-After``), sets a `UsageRecorder` in `usage_recorder_var`, and, when the
response has finished (or the client went away), gives the concurrent slot back, charges
the tokens the serving code reported and writes one usage row. The serving code reports
through `report_usage`, which does nothing outside a metered request, so the kernel and
the serving layers stay unaware of users. Model pulls, creations, copies and deletions are
written to the audit log with the principal and the outcome.

Database work runs in worker threads so a slow write never stalls the event loop; the
release and the usage write are shielded from cancellation.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmasos.errors import LLMasOSError
from llmasos.kernel.protocol import GenerateOutput
from llmasos.server.errors import llmasos_error_response

if TYPE_CHECKING:
    from llmasos.access.principal import Principal
    from llmasos.access.quotas import Admission, QuotaManager
    from llmasos.access.usage import UsageLog
    from llmasos.storage.database import Database

logger = logging.getLogger(__name__)

METERED_PREFIXES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/services",
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
REQUESTED_MODELS_STATE = "llmasos.requested_models"
"""Key in ``scope["state"]`` where `AuthMiddleware` leaves the models the body names."""
CLIENT_GONE = 499


@dataclass
class UsageRecorder:
    """Token counts reported by the serving code for the request being served."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reports: int = 0

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.model = self.model or model
        self.prompt_tokens += max(0, prompt_tokens)
        self.completion_tokens += max(0, completion_tokens)
        self.reports += 1


usage_recorder_var: contextvars.ContextVar[UsageRecorder | None] = contextvars.ContextVar(
    "usage_recorder", default=None
)


def report_usage(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Called by the serving code once per finished generation or embedding."""
    recorder = usage_recorder_var.get()
    if recorder is not None:
        recorder.add(model, prompt_tokens, completion_tokens)


def report_finals(finals: Sequence[GenerateOutput]) -> None:
    """`report_usage` for the final outputs of one request's generations."""
    if finals:
        report_usage(
            finals[0].model,
            sum(o.prompt_tokens for o in finals),
            sum(o.completion_tokens for o in finals),
        )


def _requested_models(scope: Scope) -> list[str]:
    models = scope.get("state", {}).get(REQUESTED_MODELS_STATE) or []
    return [str(m) for m in models]


def is_metered(path: str) -> bool:
    return path.startswith(METERED_PREFIXES)


class QuotaMiddleware:
    """Enforces quotas and meters usage of authenticated inference requests."""

    def __init__(self, app: ASGIApp, database: Database) -> None:
        from llmasos.access.audit import AuditLog
        from llmasos.access.quotas import QuotaManager
        from llmasos.access.usage import UsageLog

        self.app = app
        self.quotas: QuotaManager = QuotaManager(database)
        self.usage: UsageLog = UsageLog(database)
        self.audit = AuditLog(database)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from llmasos.server.auth import principal_var

        principal = principal_var.get()
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
        requested = next(iter(_requested_models(scope)), "")

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
        target = " -> ".join(_requested_models(scope)) or "-"

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

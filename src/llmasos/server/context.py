"""The context of the HTTP request being served: its id, who is calling, and its usage.

Each value lives in a context variable that a middleware sets for the duration of one
request, so the serving code reads it without threading it through every call:

* the request id (`RequestIdMiddleware` in `llmasos.server.ops`), on every log record once
  `install_request_id_logging` ran;
* the authenticated `Principal` and the models the body names (`AuthMiddleware`), from which
  `tenant_for` gives the tenant the kernel schedules fairly;
* the `UsageRecorder` of a metered request (`QuotaMiddleware`), which the serving code fills
  through `report_usage` / `report_finals` — a no-op outside a metered request, so the kernel
  and the serving layers stay unaware of users.

This module imports no middleware; the middlewares and the routes import it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from llmasos.kernel.interface import GenerateOutput

if TYPE_CHECKING:
    from llmasos.access.principal import Principal
    from llmasos.tools.records import Owner

# -- request id ------------------------------------------------------------------------------

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
"""The id of the HTTP request being served in this context ("-" outside one)."""


def current_request_id() -> str:
    return request_id_var.get()


_factory_installed = False


def install_request_id_logging() -> None:
    """Make every log record carry ``request_id`` (idempotent, process-wide)."""
    global _factory_installed
    if _factory_installed:
        return
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


# -- who is calling --------------------------------------------------------------------------

principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)
"""The authenticated principal of the request being served (None with auth off)."""

PRINCIPAL_STATE = "llmasos.principal"
"""Key in ``scope["state"]`` where `AuthMiddleware` leaves the verified principal, for code
that runs outside the request's context (the MCP endpoint's handlers)."""
REQUESTED_MODELS_STATE = "llmasos.requested_models"
"""Key in ``scope["state"]`` where `AuthMiddleware` leaves the models the body names."""


def current_principal() -> Principal | None:
    """The authenticated caller, or None when authentication is off."""
    return principal_var.get()


def tenant_for(user_field: str | None) -> str:
    """The tenant of the current request: the key's user, else the OpenAI ``user`` field."""
    principal = principal_var.get()
    if principal is not None:
        return principal.tenant
    return user_field or "anonymous"


def requested_models(scope: Scope) -> list[str]:
    """The models the request's body names, as `AuthMiddleware` found them."""
    models = scope.get("state", {}).get(REQUESTED_MODELS_STATE) or []
    return [str(m) for m in models]


# -- usage -----------------------------------------------------------------------------------


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


def owner_of_request() -> Owner:
    """Whose notes, calendar, reminders, notifications and mail the request touches: the
    key's user, or the machine's owner with authentication off."""
    from llmasos.tools.records import Owner

    principal = principal_var.get()
    return Owner.for_user(principal.user_id if principal is not None else None)

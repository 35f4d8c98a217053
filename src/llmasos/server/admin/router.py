"""``/admin/*`` routes: users, keys, quotas, prices, usage and audit.

The handlers are plain functions (FastAPI runs them in its thread pool, so database work
never blocks the event loop); the caller's principal is read by an async dependency in the
request's own context. Errors come back in OpenAI's error shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query

from llmasos.access.principal import Principal
from llmasos.config import Settings
from llmasos.server.admin.protocol import (
    AuditOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    ListOf,
    PriceBody,
    PriceOut,
    QuotaBody,
    QuotaOut,
    UsageReport,
    UserCreate,
    UserOut,
    UserPatch,
)
from llmasos.server.admin.serving import AdminService
from llmasos.server.context import principal_var

if TYPE_CHECKING:
    from llmasos.access.keys import KeyManager


async def current_principal() -> Principal:
    """The authenticated principal, or the local owner when authentication is off."""
    return principal_var.get() or Principal.local_owner()


Caller = Annotated[Principal, Depends(current_principal)]


def admin_router(settings: Settings, keys: KeyManager | None = None) -> APIRouter:
    service = AdminService(settings, keys.database if keys is not None else None)
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/users", summary="List users (admin)")
    def list_users(actor: Caller) -> ListOf[UserOut]:
        return ListOf[UserOut](data=service.list_users(actor))

    @router.post("/users", status_code=201, summary="Create a user (admin)")
    def create_user(actor: Caller, body: UserCreate) -> UserOut:
        return service.create_user(actor, body)

    @router.patch("/users/{name}", summary="Change a user's role or disable them (admin)")
    def patch_user(actor: Caller, name: str, body: UserPatch) -> UserOut:
        return service.patch_user(actor, name, body)

    @router.get("/keys", summary="List your keys (admins: anyone's)")
    def list_keys(
        actor: Caller, user: Annotated[str | None, Query(max_length=64)] = None
    ) -> ListOf[KeyOut]:
        return ListOf[KeyOut](data=service.list_keys(actor, user))

    @router.post("/keys", status_code=201, summary="Create a key; its secret is shown once")
    def create_key(actor: Caller, body: KeyCreate) -> KeyCreated:
        return service.create_key(actor, body)

    @router.delete("/keys/{key_id}", summary="Revoke a key (yours; admins: anyone's)")
    def revoke_key(actor: Caller, key_id: str) -> KeyOut:
        return service.revoke_key(actor, key_id)

    @router.get("/quotas/{user}", summary="A user's quotas and their keys' (admin)")
    def get_quotas(actor: Caller, user: str) -> ListOf[QuotaOut]:
        return ListOf[QuotaOut](data=service.get_quotas(actor, user))

    @router.put("/quotas/{user}", summary="Replace a user's limits (admin)")
    def put_user_quota(actor: Caller, user: str, body: QuotaBody) -> QuotaOut:
        return service.put_quota(actor, user, None, body)

    @router.put("/quotas/{user}/keys/{key_id}", summary="Replace one key's limits (admin)")
    def put_key_quota(actor: Caller, user: str, key_id: str, body: QuotaBody) -> QuotaOut:
        return service.put_quota(actor, user, key_id, body)

    @router.get("/prices", summary="The per-model price table (admin)")
    def list_prices(actor: Caller) -> ListOf[PriceOut]:
        return ListOf[PriceOut](data=service.list_prices(actor))

    @router.put("/prices/{model:path}", summary="Set a model's price per 1k tokens (admin)")
    def put_price(actor: Caller, model: str, body: PriceBody) -> PriceOut:
        return service.put_price(actor, model, body)

    @router.get("/usage", summary="Usage and cost, grouped (admin)")
    def usage(
        actor: Caller,
        by: Annotated[str, Query(max_length=16)] = "user",
        since: Annotated[str | None, Query(max_length=64)] = None,
        user: Annotated[str | None, Query(max_length=64)] = None,
    ) -> UsageReport:
        return service.usage(actor, by, since, user)

    @router.get("/audit", summary="The audit log, oldest first (admin)")
    def audit(
        actor: Caller,
        since: Annotated[str | None, Query(max_length=64)] = None,
        actor_name: Annotated[str | None, Query(alias="actor", max_length=64)] = None,
        limit: int = 1000,
    ) -> ListOf[AuditOut]:
        return ListOf[AuditOut](data=service.audit(actor, since, actor_name, limit))

    return router

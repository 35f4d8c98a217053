"""The admin API's logic over the access layer, acting as the request's principal.

Every call passes the principal to the managers as ``actor``, so the access layer decides
who may do what and writes the audit record. The only rules added here: ``/admin/keys`` is
open to everyone for their *own* keys, and a non-admin's new key can carry no more than the
key it was created with (scopes within the caller's, models within the caller's allow-list),
so a restricted key cannot mint an unrestricted one. Everything else requires the ``admin``
scope. With authentication off the caller is the local owner, an admin.
"""

from __future__ import annotations

import threading
from datetime import datetime

from llmasos.access.audit import AuditLog
from llmasos.access.keys import KeyInfo, KeyManager
from llmasos.access.principal import ALL_SCOPES, Principal
from llmasos.access.quotas import QuotaInfo, QuotaManager
from llmasos.access.usage import Price, PriceTable, UsageLog, parse_since
from llmasos.access.users import UserInfo, UserManager
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, PermissionDeniedError
from llmasos.server.admin.protocol import (
    AuditOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    PriceBody,
    PriceOut,
    QuotaBody,
    QuotaOut,
    UsageOut,
    UsageReport,
    UserCreate,
    UserOut,
    UserPatch,
)
from llmasos.storage import open_database
from llmasos.storage.database import Database

MAX_AUDIT_ROWS = 10_000


def user_out(user: UserInfo) -> UserOut:
    return UserOut.model_validate(user.public())


def key_out(key: KeyInfo) -> KeyOut:
    return KeyOut.model_validate(key.public())


def quota_out(quota: QuotaInfo) -> QuotaOut:
    return QuotaOut.model_validate(quota.public())


def price_out(price: Price) -> PriceOut:
    return PriceOut.model_validate(price.public())


def require_admin_scope(actor: Principal) -> None:
    actor.require(scope="admin")
    if not actor.is_admin:
        raise PermissionDeniedError(f"only an admin may do this (you are {actor.role})")


def _since(text: str | None) -> datetime | None:
    return parse_since(text) if text else None


class AdminService:
    """One instance per app; the database is the key store's, or opened on first use."""

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self._database = database
        self._lock = threading.Lock()

    @property
    def database(self) -> Database:
        with self._lock:
            if self._database is None:
                self._database = open_database(self.settings)
            return self._database

    # users ------------------------------------------------------------------------------

    def list_users(self, actor: Principal) -> list[UserOut]:
        require_admin_scope(actor)
        return [user_out(u) for u in UserManager(self.database).list()]

    def create_user(self, actor: Principal, body: UserCreate) -> UserOut:
        require_admin_scope(actor)
        users = UserManager(self.database)
        return user_out(
            users.create(body.name, role=body.role, password=body.password, actor=actor)
        )

    def patch_user(self, actor: Principal, name: str, body: UserPatch) -> UserOut:
        require_admin_scope(actor)
        users = UserManager(self.database)
        user = users.get(name)
        if body.role is not None and body.role != user.role:
            user = users.set_role(name, body.role, actor=actor)
        if body.disabled is True and user.active:
            user = users.disable(name, actor=actor)
        elif body.disabled is False and not user.active:
            user = users.enable(name, actor=actor)
        return user_out(user)

    # keys -------------------------------------------------------------------------------

    def list_keys(self, actor: Principal, user: str | None) -> list[KeyOut]:
        return [key_out(k) for k in KeyManager(self.database).list(user, actor=actor)]

    def create_key(self, actor: Principal, body: KeyCreate) -> KeyCreated:
        owner = body.user or actor.name
        scopes, models = body.scopes, body.models
        if not actor.is_admin:
            scopes, models = self._within_caller(actor, scopes, models)
        created = KeyManager(self.database).create(
            owner, body.name, expires_in=body.expires_in, scopes=scopes, models=models, actor=actor
        )
        return KeyCreated(**created.info.public(), key=created.secret)

    def revoke_key(self, actor: Principal, key_id: str) -> KeyOut:
        return key_out(KeyManager(self.database).revoke(key_id, actor=actor))

    @staticmethod
    def _within_caller(
        actor: Principal, scopes: list[str], models: list[str]
    ) -> tuple[list[str], list[str]]:
        """A non-admin's new key may not exceed the key that asks for it."""
        if ALL_SCOPES in scopes:
            scopes = sorted(actor.scopes)
        extra = sorted(set(scopes) - actor.scopes)
        if extra:
            raise PermissionDeniedError(
                f"a new key cannot have scopes your key lacks: {', '.join(extra)}",
                code="missing_scope",
            )
        if actor.models:
            if not models:
                models = list(actor.models)
            outside = [m for m in models if m not in actor.models]
            if outside:
                raise PermissionDeniedError(
                    f"a new key cannot allow models your key does not: {outside[0][:80]}",
                    code="model_not_allowed",
                )
        return scopes, models

    # quotas and prices ------------------------------------------------------------------

    def get_quotas(self, actor: Principal, user: str) -> list[QuotaOut]:
        require_admin_scope(actor)
        return [quota_out(q) for q in QuotaManager(self.database).show(user, actor=actor)]

    def put_quota(
        self, actor: Principal, user: str, key_id: str | None, body: QuotaBody
    ) -> QuotaOut:
        require_admin_scope(actor)
        quota = QuotaManager(self.database).set(
            user, key_id=key_id, limits=body.model_dump(), replace=True, actor=actor
        )
        return quota_out(quota)

    def list_prices(self, actor: Principal) -> list[PriceOut]:
        require_admin_scope(actor)
        return [price_out(p) for p in PriceTable(self.database).list()]

    def put_price(self, actor: Principal, model: str, body: PriceBody) -> PriceOut:
        require_admin_scope(actor)
        price = PriceTable(self.database).set(
            model,
            prompt_per_1k=body.prompt_per_1k,
            completion_per_1k=body.completion_per_1k,
            actor=actor,
        )
        return price_out(price)

    # usage and audit --------------------------------------------------------------------

    def usage(self, actor: Principal, by: str, since: str | None, user: str | None) -> UsageReport:
        require_admin_scope(actor)
        moment = _since(since)
        rows = UsageLog(self.database).report(by=by, since=moment, user=user, actor=actor)
        data = [UsageOut.model_validate(r.public()) for r in rows]
        return UsageReport(by=by, since=moment, data=data)

    def audit(
        self, actor: Principal, since: str | None, who: str | None, limit: int
    ) -> list[AuditOut]:
        require_admin_scope(actor)
        if not 1 <= limit <= MAX_AUDIT_ROWS:
            raise InvalidRequestError(f"limit must be 1 to {MAX_AUDIT_ROWS}", param="limit")
        events = AuditLog(self.database).list(since=_since(since), actor=who, limit=limit)
        return [AuditOut.model_validate(e.public()) for e in events]

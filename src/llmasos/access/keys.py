"""API keys: created once, stored as a SHA-256 hash, checked on every request.

A key reads ``llmos-`` followed by 43 URL-safe characters (32 random bytes). It is returned
once by `KeyManager.create` and never again; the database keeps only its SHA-256 hash (a
fast hash is right here: the secret has 256 bits of entropy, so there is nothing to
brute-force) and a short public ``key_id`` used to list and revoke it. `KeyManager.verify`
reads the database on every call, so a revocation, an expiry, a disabled user or a lowered
role takes effect on the very next request. A non-admin actor only sees and changes its
own keys; another user's key is reported as not found.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.access.audit import AuditLog
from llmasos.access.principal import Principal, check_scopes, effective_scopes
from llmasos.access.users import check_user_name, find_user, require_admin
from llmasos.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)
from llmasos.storage.database import Database
from llmasos.storage.schema import ApiKey, User, utcnow

logger = logging.getLogger(__name__)

KEY_PREFIX = "llmos-"
SECRET_BYTES = 32
MAX_LABEL = 128
MAX_MODEL_PATTERN = 200
LAST_USED_RESOLUTION = timedelta(seconds=60)
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43,200}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_label(name: str) -> str:
    if not name.strip() or len(name) > MAX_LABEL or _CONTROL.search(name):
        raise InvalidRequestError(
            f"a key name has 1 to {MAX_LABEL} printable characters", param="name"
        )
    return name


def _check_models(models: Sequence[str]) -> list[str]:
    result: list[str] = []
    for model in models:
        if not model or len(model) > MAX_MODEL_PATTERN or _CONTROL.search(model) or " " in model:
            raise InvalidRequestError(
                f"invalid model pattern {model[:80]!r}: a model name or glob without spaces",
                param="models",
            )
        if model not in result:
            result.append(model)
    return result


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key (never its secret)."""

    key_id: str
    user: str
    name: str
    scopes: list[str]
    models: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos keys list --json`` show of a key."""
        return {
            "key_id": self.key_id,
            "user": self.user,
            "name": self.name,
            "scopes": list(self.scopes),
            "models": list(self.models),
            "status": self.status(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }

    def status(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


@dataclass(frozen=True)
class CreatedKey:
    info: KeyInfo
    secret: str
    """The key itself: shown to its owner once, then only its hash exists."""


def _info(key: ApiKey, user_name: str) -> KeyInfo:
    return KeyInfo(
        key_id=key.key_id,
        user=user_name,
        name=key.name,
        scopes=list(key.scopes),
        models=list(key.models),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


class KeyManager:
    """Create, list, revoke and verify API keys."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit = AuditLog(database)

    def create(
        self,
        user: str,
        name: str,
        *,
        expires_in: float | None = None,
        scopes: Sequence[str] = ("*",),
        models: Sequence[str] = (),
        actor: Principal | None = None,
    ) -> CreatedKey:
        """Make a key for ``user``; the returned secret is never retrievable again."""
        check_user_name(user)
        if actor is not None and actor.name != user:
            require_admin(actor, "create keys for other users")
        _check_label(name)
        scope_list = check_scopes(scopes)
        model_list = _check_models(models)
        if expires_in is not None and expires_in <= 0:
            raise InvalidRequestError("a key's lifetime must be positive", param="expires")
        now = utcnow()
        expires_at = now + timedelta(seconds=expires_in) if expires_in is not None else None
        for _attempt in range(3):  # a key_id collision (2^-48) just draws again
            secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
            try:
                with self.database.session(write=True) as session:
                    owner = find_user(session, user)
                    if owner.role == "pending":
                        raise PermissionDeniedError(f"user {user} is pending approval")
                    key = ApiKey(
                        key_id=secrets.token_hex(6),
                        user_id=owner.id,
                        name=name,
                        secret_hash=hash_secret(secret),
                        scopes=scope_list,
                        models=model_list,
                        created_at=now,
                        expires_at=expires_at,
                    )
                    session.add(key)
                    session.flush()
                    self.audit.record(
                        "key.create", actor=actor, target=f"{user}/{key.key_id}", session=session
                    )
                    return CreatedKey(info=_info(key, owner.name), secret=secret)
            except IntegrityError:
                continue
        raise StorageError("could not allocate a unique key id; try again")

    def list(self, user: str | None = None, *, actor: Principal | None = None) -> list[KeyInfo]:
        """Keys, oldest first: of one user, or of everyone (admins only)."""
        if actor is not None and not actor.is_admin:
            if user is not None and user != actor.name:
                raise NotFoundError(f"no user named {user[:80]!r}", code="user_not_found")
            user = actor.name
        query = select(ApiKey, User.name).join(User).order_by(ApiKey.id)
        with self.database.session() as session:
            if user is not None:
                query = query.where(ApiKey.user_id == find_user(session, user).id)
            return [_info(key, owner) for key, owner in session.execute(query)]

    def revoke(self, key_id: str, *, actor: Principal | None = None) -> KeyInfo:
        """Revoke a key; it fails authentication from the next request on."""
        with self.database.session(write=True) as session:
            key, owner = self._find(session, key_id, actor)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                self.audit.record(
                    "key.revoke", actor=actor, target=f"{owner}/{key_id}", session=session
                )
            return _info(key, owner)

    def verify(
        self, secret: str | None, *, scope: str | None = None, model: str | None = None
    ) -> Principal:
        """The principal a key stands for, allowed ``scope`` and ``model`` if given.

        Raises `AuthenticationError` (401) for a missing, malformed, unknown, revoked or
        expired key or a disabled user, and `PermissionDeniedError` (403) for a pending
        user, a missing scope or a model outside the key's allow-list.
        """
        if not secret:
            raise AuthenticationError("an API key is required", code="missing_api_key")
        if not _KEY_SHAPE.fullmatch(secret):
            raise AuthenticationError("invalid API key")
        now = utcnow()
        with self.database.session() as session:
            row = session.execute(
                select(ApiKey, User).join(User).where(ApiKey.secret_hash == hash_secret(secret))
            ).first()
            if row is None:
                raise AuthenticationError("invalid API key")
            key, user = row
        if key.revoked_at is not None:
            raise AuthenticationError(f"API key {key.key_id} was revoked", code="revoked_api_key")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError(f"API key {key.key_id} has expired", code="expired_api_key")
        if user.disabled_at is not None:
            raise AuthenticationError(f"user {user.name} is disabled", code="user_disabled")
        if user.role == "pending":
            raise PermissionDeniedError(f"user {user.name} is pending approval")
        principal = Principal(
            user_id=user.id,
            name=user.name,
            role=user.role,
            key_id=key.key_id,
            scopes=effective_scopes(user.role, key.scopes),
            models=tuple(key.models),
        )
        principal.require(scope=scope, model=model)
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            self._touch(key.id, now)
        return principal

    def _touch(self, key_pk: int, now: datetime) -> None:
        """Record use at most once a minute; a failure here never fails the request."""
        try:
            with self.database.session(write=True) as session:
                key = session.get(ApiKey, key_pk)
                if key is not None:
                    key.last_used_at = now
        except StorageError as error:
            logger.warning("could not record key use: %s", error)

    def _find(self, session: Session, key_id: str, actor: Principal | None) -> tuple[ApiKey, str]:
        missing = NotFoundError(f"no API key {key_id[:80]!r}", code="key_not_found")
        row = session.execute(
            select(ApiKey, User.name).join(User).where(ApiKey.key_id == key_id[:32])
        ).first()
        if row is None:
            raise missing
        key, owner = row
        if actor is not None and not actor.is_admin and owner != actor.name:
            raise missing
        return key, owner

"""Users: creation (the first is admin), roles, disabling, and password sign-in (argon2).

Names are 1-64 characters of letters, digits and ``._@-`` starting with a letter or digit;
anything else is refused before it reaches SQL (which is parameterised anyway). Passwords
are hashed with argon2id and never stored or logged. The last active admin cannot be
demoted or disabled, so an installation never locks its owner out. ``actor`` is the
principal acting (None: the local owner, i.e. the CLI on this machine); only admins manage
users, and every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.access.audit import AuditLog
from llmasos.access.principal import ROLE_SCOPES, Principal, check_role
from llmasos.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from llmasos.storage.database import Database
from llmasos.storage.schema import User, utcnow

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_hasher = PasswordHasher()


def check_user_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise InvalidRequestError(
            f"invalid user name {shown!r}: use 1-64 letters, digits or ._@- "
            "starting with a letter or digit",
            param="name",
        )
    return name


def _check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequestError(
            f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters", param="password"
        )
    return password


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    has_password: bool

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos users list --json`` show of a user."""
        return {
            "name": self.name,
            "role": self.role,
            "disabled": not self.active,
            "has_password": self.has_password,
            "created_at": self.created_at,
        }


def _info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        name=user.name,
        role=user.role,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
        has_password=user.password_hash is not None,
    )


def require_admin(actor: Principal | None, what: str) -> None:
    if actor is not None and not actor.is_admin:
        raise PermissionDeniedError(f"only an admin may {what}")


def find_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFoundError(f"no user named {name[:80]!r}", code="user_not_found")
    return user


class UserManager:
    """Create, list and change users; sign them in with a password."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit = AuditLog(database)

    def create(
        self,
        name: str,
        *,
        role: str = "user",
        password: str | None = None,
        actor: Principal | None = None,
    ) -> UserInfo:
        """Add a user. The very first user becomes admin whatever ``role`` says."""
        require_admin(actor, "create users")
        check_user_name(name)
        check_role(role)
        password_hash = _hasher.hash(_check_password(password)) if password is not None else None
        try:
            with self.database.session(write=True) as session:
                if not self.database.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises
                    session.execute(select(func.pg_advisory_xact_lock(0x75736572)))
                first = session.scalar(select(func.count()).select_from(User)) == 0
                now = utcnow()
                user = User(
                    name=name,
                    role="admin" if first else role,
                    password_hash=password_hash,
                    created_at=now,
                    updated_at=now,
                )
                session.add(user)
                session.flush()
                self.audit.record(
                    "user.create",
                    actor=actor,
                    target=name,
                    detail=f"role={user.role}",
                    session=session,
                )
                return _info(user)
        except IntegrityError:
            raise InvalidRequestError(
                f"a user named {name!r} already exists", code="already_exists", param="name"
            ) from None

    def get(self, name: str) -> UserInfo:
        with self.database.session() as session:
            return _info(find_user(session, name))

    def list(self) -> list[UserInfo]:
        with self.database.session() as session:
            return [_info(u) for u in session.scalars(select(User).order_by(User.id))]

    def set_role(self, name: str, role: str, *, actor: Principal | None = None) -> UserInfo:
        require_admin(actor, "change roles")
        check_role(role)
        with self.database.session(write=True) as session:
            user = find_user(session, name)
            if user.role == "admin" and role != "admin":
                self._keep_an_admin(session, user)
            old, user.role = user.role, role
            self.audit.record(
                "user.set_role",
                actor=actor,
                target=name,
                detail=f"{old} -> {role}",
                session=session,
            )
            return _info(user)

    def disable(self, name: str, *, actor: Principal | None = None) -> UserInfo:
        """Disable a user: their keys stop working on the next request."""
        require_admin(actor, "disable users")
        with self.database.session(write=True) as session:
            user = find_user(session, name)
            if user.disabled_at is None:
                if user.role == "admin":
                    self._keep_an_admin(session, user)
                user.disabled_at = utcnow()
                self.audit.record("user.disable", actor=actor, target=name, session=session)
            return _info(user)

    def enable(self, name: str, *, actor: Principal | None = None) -> UserInfo:
        require_admin(actor, "enable users")
        with self.database.session(write=True) as session:
            user = find_user(session, name)
            if user.disabled_at is not None:
                user.disabled_at = None
                self.audit.record("user.enable", actor=actor, target=name, session=session)
            return _info(user)

    def set_password(self, name: str, password: str, *, actor: Principal | None = None) -> None:
        if actor is not None and actor.name != name:
            require_admin(actor, "set another user's password")
        password_hash = _hasher.hash(_check_password(password))
        with self.database.session(write=True) as session:
            find_user(session, name).password_hash = password_hash
            self.audit.record("user.set_password", actor=actor, target=name, session=session)

    def authenticate(self, name: str, password: str) -> Principal:
        """Sign in with a password: a `Principal` or `AuthenticationError` (401)."""
        failure = AuthenticationError("wrong user name or password", code="invalid_credentials")
        if not NAME_PATTERN.fullmatch(name) or len(password) > MAX_PASSWORD:
            raise failure
        with self.database.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            stored = user.password_hash if user is not None else None
        try:
            if user is None or stored is None:
                raise failure
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            self.audit.record("auth.sign_in", target=name, outcome="denied")
            raise failure from None
        except AuthenticationError:
            self.audit.record("auth.sign_in", target=name, outcome="denied")
            raise
        if user.disabled_at is not None:
            self.audit.record("auth.sign_in", target=name, outcome="denied", detail="disabled")
            raise AuthenticationError(f"user {name} is disabled", code="user_disabled")
        if _hasher.check_needs_rehash(stored):
            with self.database.session(write=True) as session:
                find_user(session, name).password_hash = _hasher.hash(password)
        principal = Principal(
            user_id=user.id, name=user.name, role=user.role, scopes=ROLE_SCOPES[user.role]
        )
        self.audit.record("auth.sign_in", actor=principal, target=name)
        return principal

    def _keep_an_admin(self, session: Session, leaving: User) -> None:
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.disabled_at.is_(None), User.id != leaving.id)
        )
        if not others:
            raise InvalidRequestError(
                f"{leaving.name} is the last active admin; make another user admin first",
                code="last_admin",
            )

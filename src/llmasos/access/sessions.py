"""Browser sessions: password sign-in for the web console.

`SessionManager.sign_in` checks a user's password (`UserManager.authenticate`, argon2) and
opens a session: a random token for an HttpOnly cookie, of which only the SHA-256 is stored,
and a CSRF token that every state-changing call must send back in the ``X-CSRF-Token``
header. A session ends after 12 hours unused or 7 days in all, when the user signs out, or
when the user is disabled or deleted; each request sees the user's role *now*, as API keys
do. `first_admin` creates the first user (an admin) from the console's first-run page, and
only while no user exists.

Failed sign-ins are rate-limited per user name from the audit log, where every failure is
recorded anyway: after `MAX_FAILURES` in `FAILURE_WINDOW`, further attempts for that name are
refused with 429 and ``Retry-After`` until the oldest failure leaves the window (a right
password included, so guessing cannot continue).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select

from llmasos.access.audit import AuditLog
from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
)
from llmasos.storage.database import Database
from llmasos.storage.schema import AuditEvent, User, WebSession, utcnow

SESSION_COOKIE: Final = "llmasos_session"
CSRF_HEADER: Final = "x-csrf-token"
IDLE_TIMEOUT: Final = timedelta(hours=12)
MAX_LIFETIME: Final = timedelta(days=7)
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = timedelta(minutes=15)
TOUCH_RESOLUTION: Final = timedelta(minutes=1)
"""A session's last use is written at most this often (reads stay reads)."""
SIGN_IN_ACTION: Final = "auth.sign_in"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionInfo:
    """A verified session: who, and the CSRF token their writes must carry."""

    principal: Principal
    csrf_token: str
    expires_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)


class SessionManager:
    """Sign-in, session checks and sign-out for the console."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.users = UserManager(database)
        self.audit = AuditLog(database)

    # --- signing in ------------------------------------------------------------------------

    def setup_needed(self) -> bool:
        """True while no user exists (the console shows its first-run page)."""
        with self.database.session() as session:
            return not session.scalar(select(func.count()).select_from(User))

    def first_admin(self, name: str, password: str) -> tuple[str, SessionInfo]:
        """Create the first user (an admin) and sign them in; 409-like refusal once anyone
        exists, so the first-run page cannot be replayed to add an admin later."""
        if not self.setup_needed():
            raise PermissionDeniedError(
                "this LLMasOS already has users; sign in, or ask an admin for an account",
                code="setup_done",
            )
        self.users.create(name, role="admin", password=password)
        return self.sign_in(name, password)

    def sign_in(
        self, name: str, password: str, *, now: datetime | None = None
    ) -> tuple[str, SessionInfo]:
        """The new session's cookie token and its info; 401 for a wrong name or password,
        429 after too many recent failures for this name."""
        now = now or utcnow()
        self._check_rate(name, now)
        principal = self.users.authenticate(name, password)
        if principal.role == "pending":
            raise PermissionDeniedError(f"user {name} is pending approval by an admin")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        expires = now + MAX_LIFETIME
        with self.database.session(write=True) as session:
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=principal.user_id,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
        return token, SessionInfo(principal, csrf, expires)

    def _check_rate(self, name: str, now: datetime) -> None:
        since = now - FAILURE_WINDOW
        with self.database.session() as session:
            failures = list(
                session.scalars(
                    select(AuditEvent.created_at)
                    .where(
                        AuditEvent.action == SIGN_IN_ACTION,
                        AuditEvent.target == name[:255],
                        AuditEvent.outcome == "denied",
                        AuditEvent.created_at >= since,
                    )
                    .order_by(AuditEvent.created_at.desc())
                    .limit(MAX_FAILURES)
                )
            )
        if len(failures) >= MAX_FAILURES:
            oldest = min(failures)
            wait = max(1.0, (oldest + FAILURE_WINDOW - now).total_seconds())
            raise RateLimitError(
                f"too many failed sign-ins for {name[:64]}; try again in {int(wait) + 1} s",
                code="too_many_sign_ins",
                retry_after=wait,
            )

    # --- using a session -------------------------------------------------------------------

    def verify(self, token: str | None, *, now: datetime | None = None) -> SessionInfo:
        """The session a cookie token opens: 401 when missing, unknown, expired or its user
        disabled; 403 for a user made pending since."""
        if not token or len(token) > 128:
            raise AuthenticationError("sign in first", code="not_signed_in")
        now = now or utcnow()
        with self.database.session() as session:
            row = session.execute(
                select(WebSession, User).join(User).where(WebSession.token_hash == _digest(token))
            ).first()
        if row is None:
            raise AuthenticationError("your session has ended; sign in again", code="not_signed_in")
        web, user = row
        if web.expires_at <= now or web.last_seen_at + IDLE_TIMEOUT <= now:
            self._end(web.id)
            raise AuthenticationError(
                "your session has expired; sign in again", code="session_expired"
            )
        if user.disabled_at is not None:
            raise AuthenticationError(f"user {user.name} is disabled", code="user_disabled")
        if user.role == "pending":
            raise PermissionDeniedError(f"user {user.name} is pending approval")
        if now - web.last_seen_at >= TOUCH_RESOLUTION:
            with self.database.session(write=True) as session:
                stored = session.get(WebSession, web.id)
                if stored is not None:
                    stored.last_seen_at = now
        principal = Principal(
            user_id=user.id, name=user.name, role=user.role, scopes=ROLE_SCOPES[user.role]
        )
        return SessionInfo(principal, web.csrf_token, web.expires_at)

    def sign_out(self, token: str | None) -> None:
        """End the session of this token (nothing if there is none)."""
        if token:
            with self.database.session(write=True) as session:
                session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))

    def sign_out_everywhere(self, user_id: int) -> int:
        """End every session of a user (after a password change, say); how many."""
        with self.database.session(write=True) as session:
            result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            return int(getattr(result, "rowcount", 0) or 0)

    def _end(self, session_id: int) -> None:
        with self.database.session(write=True) as session:
            session.execute(delete(WebSession).where(WebSession.id == session_id))


def check_credentials(name: object, password: object) -> tuple[str, str]:
    """The name and password of a sign-in body, or a 400 naming the field."""
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("name is required", param="name")
    if not isinstance(password, str) or not password:
        raise InvalidRequestError("password is required", param="password")
    return name, password

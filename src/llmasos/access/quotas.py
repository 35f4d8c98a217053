"""Quotas and rate limits, exact under concurrency on SQLite and PostgreSQL.

A user, and each of their keys, may have limits: requests per minute, tokens per UTC day
and per UTC month, and concurrent requests. Counters live in ``quota_counters`` in fixed
windows keyed by (subject, period, window start). `QuotaManager.admit` takes a request slot
with one conditional ``UPDATE ... SET count = count + 1 WHERE count + 1 <= limit`` per
limit, all in one transaction: if any limit is reached the transaction rolls back (nothing
is charged) and `RateLimitError` (429) says when the window frees. The database makes this
exact: SQLite serialises writers (``BEGIN IMMEDIATE``), and PostgreSQL re-checks the
``WHERE`` on the newest row version after waiting on its row lock. Token limits are checked
before a request (refused once at or over the limit) and charged after it (`charge`) with
the real usage; `release` gives back a concurrent slot.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from llmasos.access.audit import AuditLog
from llmasos.access.principal import Principal
from llmasos.access.users import find_user, require_admin
from llmasos.errors import InvalidRequestError, NotFoundError, RateLimitError
from llmasos.storage.database import Database
from llmasos.storage.schema import ApiKey, Quota, QuotaCounter, utcnow

LIMITS = ("requests_per_minute", "tokens_per_day", "tokens_per_month", "concurrent_requests")
MAX_LIMIT = 2**62


def user_subject(user_id: int) -> str:
    return f"user:{user_id}"


def key_subject(key_id: str) -> str:
    return f"key:{key_id}"


def window_start(period: str, now: float) -> int:
    """The Unix second the fixed UTC window containing ``now`` starts at."""
    if period == "minute":
        return int(now // 60 * 60)
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return calendar.timegm((moment.year, moment.month, moment.day, 0, 0, 0))
    if period == "month":
        return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))
    return 0  # concurrent: one counter for all time


def window_end(period: str, now: float) -> int:
    start = window_start(period, now)
    if period == "minute":
        return start + 60
    if period == "day":
        return start + 86_400
    moment = datetime.fromtimestamp(start, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


@dataclass(frozen=True)
class QuotaInfo:
    user: str
    key_id: str | None
    requests_per_minute: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None
    concurrent_requests: int | None
    updated_at: datetime

    def limits(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in LIMITS}

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos quota show --json`` show of a quota."""
        return {
            "user": self.user,
            "key_id": self.key_id,
            **self.limits(),
            "updated_at": self.updated_at,
        }


@dataclass
class Admission:
    """What `admit` took: the concurrent slots to give back, the subjects to charge."""

    concurrent_subjects: list[str] = field(default_factory=list)
    token_subjects: list[str] = field(default_factory=list)


def _check_limit(name: str, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise InvalidRequestError(f"{name} must be between 0 and {MAX_LIMIT}", param=name)
    return value


class QuotaManager:
    """Set and show limits; admit, release and charge requests against them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit = AuditLog(database)

    # -- limits ---------------------------------------------------------------------------

    def set(
        self,
        user: str,
        *,
        key_id: str | None = None,
        limits: dict[str, int | None],
        replace: bool = False,
        actor: Principal | None = None,
    ) -> QuotaInfo:
        """Set limits of ``user`` (or of one of their keys). Limits not named keep their
        value, unless ``replace``, which clears them. None removes a limit."""
        require_admin(actor, "set quotas")
        unknown = set(limits) - set(LIMITS)
        if unknown:
            raise InvalidRequestError(f"unknown limit {sorted(unknown)[0]!r}")
        for name, value in limits.items():
            _check_limit(name, value)
        with self.database.session(write=True) as session:
            owner = find_user(session, user)
            subject = user_subject(owner.id)
            if key_id is not None:
                key = session.scalar(
                    select(ApiKey).where(ApiKey.key_id == key_id[:32], ApiKey.user_id == owner.id)
                )
                if key is None:
                    raise NotFoundError(
                        f"user {user} has no API key {key_id[:80]!r}", code="key_not_found"
                    )
                subject = key_subject(key.key_id)
            quota = session.scalar(select(Quota).where(Quota.subject == subject))
            if quota is None:
                quota = Quota(subject=subject, user_id=owner.id, key_id=key_id, updated_at=utcnow())
                session.add(quota)
            for name in LIMITS:
                if name in limits or replace:
                    setattr(quota, name, limits.get(name))
            quota.updated_at = utcnow()
            session.flush()
            detail = ", ".join(f"{n}={getattr(quota, n)}" for n in LIMITS)
            target = f"{user}/{key_id}" if key_id else user
            self.audit.record(
                "quota.set", actor=actor, target=target, detail=detail, session=session
            )
            return self._info(quota, owner.name)

    def show(self, user: str, *, actor: Principal | None = None) -> list[QuotaInfo]:
        """The user's own limits first, then their keys'."""
        if actor is not None and actor.name != user:
            require_admin(actor, "see other users' quotas")
        with self.database.session() as session:
            owner = find_user(session, user)
            rows = session.scalars(
                select(Quota).where(Quota.user_id == owner.id).order_by(Quota.key_id, Quota.id)
            ).all()
            ordered = sorted(rows, key=lambda q: (q.key_id is not None, q.key_id or ""))
            return [self._info(q, owner.name) for q in ordered]

    def clear(
        self, user: str, *, key_id: str | None = None, actor: Principal | None = None
    ) -> QuotaInfo:
        """Remove every limit of the user (or of one of their keys)."""
        return self.set(user, key_id=key_id, limits={}, replace=True, actor=actor)

    @staticmethod
    def _info(quota: Quota, user_name: str) -> QuotaInfo:
        return QuotaInfo(
            user=user_name,
            key_id=quota.key_id,
            requests_per_minute=quota.requests_per_minute,
            tokens_per_day=quota.tokens_per_day,
            tokens_per_month=quota.tokens_per_month,
            concurrent_requests=quota.concurrent_requests,
            updated_at=quota.updated_at,
        )

    # -- enforcement ----------------------------------------------------------------------

    def admit(self, principal: Principal, *, now: float | None = None) -> Admission:
        """Take a request slot under every limit that applies, or raise `RateLimitError`."""
        if principal.user_id is None:
            return Admission()  # the local owner has no quotas
        subjects = [user_subject(principal.user_id)]
        if principal.key_id is not None:
            subjects.append(key_subject(principal.key_id))
        with self.database.session() as session:
            quotas = session.scalars(select(Quota).where(Quota.subject.in_(subjects))).all()
        if not quotas:
            return Admission()
        now = time.time() if now is None else now
        admission = Admission()
        with self.database.session(write=True) as session:
            for quota in sorted(quotas, key=lambda q: q.subject):  # one lock order everywhere
                self._check_tokens(session, quota, now)
                if quota.tokens_per_day is not None or quota.tokens_per_month is not None:
                    admission.token_subjects.append(quota.subject)
                for period, limit in (
                    ("minute", quota.requests_per_minute),
                    ("concurrent", quota.concurrent_requests),
                ):
                    if limit is None:
                        continue
                    if not _take(session, quota.subject, period, window_start(period, now), limit):
                        raise _limit_error(quota, period, limit, now)
                    if period == "concurrent":
                        admission.concurrent_subjects.append(quota.subject)
        return admission

    def release(self, admission: Admission) -> None:
        """Give back the concurrent slots an admission took (idempotent per admission)."""
        subjects, admission.concurrent_subjects = admission.concurrent_subjects, []
        if not subjects:
            return
        with self.database.session(write=True) as session:
            for subject in sorted(subjects):
                session.execute(
                    update(QuotaCounter)
                    .where(
                        QuotaCounter.subject == subject,
                        QuotaCounter.period == "concurrent",
                        QuotaCounter.window_start == 0,
                        QuotaCounter.count > 0,
                    )
                    .values(count=QuotaCounter.count - 1)
                    .execution_options(synchronize_session=False)
                )

    def charge(self, admission: Admission, tokens: int, *, now: float | None = None) -> None:
        """Add the tokens a finished request used to its subjects' day and month counters."""
        if tokens <= 0 or not admission.token_subjects:
            return
        now = time.time() if now is None else now
        with self.database.session(write=True) as session:
            for subject in sorted(admission.token_subjects):
                for period in ("day", "month"):
                    start = window_start(period, now)
                    _ensure_counter(session, subject, period, start)
                    session.execute(
                        update(QuotaCounter)
                        .where(*_counter_key(subject, period, start))
                        .values(count=QuotaCounter.count + tokens)
                        .execution_options(synchronize_session=False)
                    )

    def counter(self, subject: str, period: str, *, now: float | None = None) -> int:
        """The current count of one window (0 if it has none)."""
        start = window_start(period, time.time() if now is None else now)
        with self.database.session() as session:
            value = session.scalar(
                select(QuotaCounter.count).where(*_counter_key(subject, period, start))
            )
        return int(value or 0)

    def _check_tokens(self, session: Session, quota: Quota, now: float) -> None:
        for period, limit in (("day", quota.tokens_per_day), ("month", quota.tokens_per_month)):
            if limit is None:
                continue
            used = session.scalar(
                select(QuotaCounter.count).where(
                    *_counter_key(quota.subject, period, window_start(period, now))
                )
            )
            if int(used or 0) >= limit:
                raise _limit_error(quota, period, limit, now)


def _counter_key(subject: str, period: str, start: int) -> tuple[ColumnElement[bool], ...]:
    return (
        QuotaCounter.subject == subject,
        QuotaCounter.period == period,
        QuotaCounter.window_start == start,
    )


def _ensure_counter(session: Session, subject: str, period: str, start: int) -> None:
    """Create the window's counter at 0 unless it exists; on a new window, drop old ones."""
    values = {"subject": subject, "period": period, "window_start": start, "count": 0}
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(QuotaCounter).values(**values).on_conflict_do_nothing()
    result = session.execute(statement)
    if isinstance(result, CursorResult) and result.rowcount == 1 and period != "concurrent":
        session.execute(
            delete(QuotaCounter)
            .where(
                QuotaCounter.subject == subject,
                QuotaCounter.period == period,
                QuotaCounter.window_start < start,
            )
            .execution_options(synchronize_session=False)
        )


def _take(session: Session, subject: str, period: str, start: int, limit: int) -> bool:
    """Atomically add one to the counter if it stays within ``limit``; whether it did."""
    _ensure_counter(session, subject, period, start)
    result = session.execute(
        update(QuotaCounter)
        .where(*_counter_key(subject, period, start), QuotaCounter.count + 1 <= limit)
        .values(count=QuotaCounter.count + 1)
        .execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1


def _limit_error(quota: Quota, period: str, limit: int, now: float) -> RateLimitError:
    who = f"key {quota.key_id}" if quota.key_id else "your account"
    if period == "concurrent":
        return RateLimitError(
            f"{who} already has {limit} concurrent request(s) running; retry when one finishes",
            code="concurrency_limit_exceeded",
            retry_after=1,
        )
    wait = max(1, math.ceil(window_end(period, now) - now))
    if period == "minute":
        message = f"{who} reached its limit of {limit} requests per minute"
        code = "rate_limit_exceeded"
    else:
        message = f"{who} used its {limit} tokens for this {period} (UTC)"
        code = "token_quota_exceeded"
    return RateLimitError(f"{message}; retry in {wait} s", code=code, retry_after=wait)

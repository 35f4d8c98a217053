"""Quotas on SQLite and PostgreSQL: exact under 32 concurrent writers, windows, Retry-After."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.principal import Principal
from llmasos.access.quotas import QuotaManager, key_subject, user_subject, window_start
from llmasos.access.users import UserManager
from llmasos.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, RateLimitError
from llmasos.storage import Database

NOW = 60 * 28_333_334 + 30.0  # 30 s into a minute window


def principal_of(database: Database, name: str, key_id: str | None = None) -> Principal:
    user = UserManager(database).get(name)
    return Principal(user_id=user.id, name=name, role=user.role, key_id=key_id)


@pytest.fixture
def bob(database: Database) -> Principal:
    UserManager(database).create("root", role="admin")
    UserManager(database).create("bob", role="user")
    return principal_of(database, "bob")


def test_32_concurrent_admissions_take_exactly_the_limit(
    database: Database, bob: Principal
) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"requests_per_minute": 20})

    def attempt(_: int) -> bool:
        try:
            quotas.admit(bob, now=NOW)
            return True
        except RateLimitError:
            return False

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(attempt, range(32)))
    assert results.count(True) == 20
    assert quotas.counter(user_subject(bob.user_id or 0), "minute", now=NOW) == 20


def test_32_concurrent_charges_lose_no_tokens(database: Database, bob: Principal) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"tokens_per_day": 10**9, "tokens_per_month": 10**9})
    admission = quotas.admit(bob, now=NOW)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: quotas.charge(admission, 7, now=NOW), range(32)))
    subject = user_subject(bob.user_id or 0)
    assert quotas.counter(subject, "day", now=NOW) == 32 * 7
    assert quotas.counter(subject, "month", now=NOW) == 32 * 7


def test_past_the_limit_is_429_with_the_seconds_left(database: Database, bob: Principal) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"requests_per_minute": 2})
    quotas.admit(bob, now=NOW)
    quotas.admit(bob, now=NOW)
    with pytest.raises(RateLimitError) as refused:
        quotas.admit(bob, now=NOW)
    assert refused.value.status_code == 429 and refused.value.retry_after == 30
    quotas.admit(bob, now=NOW + 30)  # the next window


def test_a_refusal_charges_nothing(database: Database, bob: Principal) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"requests_per_minute": 10, "concurrent_requests": 1})
    held = quotas.admit(bob, now=NOW)
    with pytest.raises(RateLimitError, match="concurrent"):
        quotas.admit(bob, now=NOW)
    subject = user_subject(bob.user_id or 0)
    assert quotas.counter(subject, "minute", now=NOW) == 1  # the refused one rolled back
    quotas.release(held)
    quotas.release(held)  # idempotent
    assert quotas.counter(subject, "concurrent", now=NOW) == 0
    quotas.release(quotas.admit(bob, now=NOW))


def test_token_quota_refuses_once_used_up(database: Database, bob: Principal) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"tokens_per_day": 100})
    admission = quotas.admit(bob, now=NOW)
    quotas.charge(admission, 99, now=NOW)
    quotas.charge(quotas.admit(bob, now=NOW), 50, now=NOW)  # under before: allowed, overshoots
    with pytest.raises(RateLimitError) as refused:
        quotas.admit(bob, now=NOW)
    assert refused.value.code == "token_quota_exceeded"
    day_end = window_start("day", NOW) + 86_400
    assert refused.value.retry_after == pytest.approx(day_end - NOW, abs=1)


def test_key_limits_apply_to_that_key_only(database: Database, bob: Principal) -> None:
    keys = KeyManager(database)
    limited = keys.create("bob", "limited").info.key_id
    free = keys.create("bob", "free").info.key_id
    quotas = QuotaManager(database)
    quotas.set("bob", key_id=limited, limits={"requests_per_minute": 1})
    quotas.admit(principal_of(database, "bob", limited), now=NOW)
    with pytest.raises(RateLimitError, match=f"key {limited}"):
        quotas.admit(principal_of(database, "bob", limited), now=NOW)
    for _ in range(3):
        quotas.admit(principal_of(database, "bob", free), now=NOW)
    assert quotas.counter(key_subject(limited), "minute", now=NOW) == 1
    assert [q.key_id for q in quotas.show("bob")] == [limited]


def test_set_show_clear_and_who_may(database: Database, bob: Principal) -> None:
    quotas = QuotaManager(database)
    quotas.set("bob", limits={"requests_per_minute": 5, "tokens_per_day": 100})
    quota = quotas.set("bob", limits={"tokens_per_day": 200})
    assert (quota.requests_per_minute, quota.tokens_per_day) == (5, 200)
    assert not any(quotas.clear("bob").limits().values())
    with pytest.raises(PermissionDeniedError):
        quotas.set("bob", limits={"requests_per_minute": 1000}, actor=bob)
    with pytest.raises(InvalidRequestError):
        quotas.set("bob", limits={"requests_per_minute": -1})
    with pytest.raises(NotFoundError):
        quotas.set("bob", key_id="' OR 1=1 --", limits={"requests_per_minute": 1})
    with pytest.raises(NotFoundError):
        quotas.set("bob'; DROP TABLE quotas; --", limits={"requests_per_minute": 1})
    assert quotas.show("bob")[0].user == "bob"


def test_no_quota_means_no_database_writes(database: Database, bob: Principal) -> None:
    admission = QuotaManager(database).admit(bob, now=NOW)
    assert admission.concurrent_subjects == [] and admission.token_subjects == []
    assert QuotaManager(database).admit(Principal.local_owner()).token_subjects == []

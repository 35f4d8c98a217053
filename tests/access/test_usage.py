"""Usage rows, grouped reports, prices and costs, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmasos.access.principal import Principal
from llmasos.access.usage import PriceTable, UsageLog, parse_since, usage_cost
from llmasos.access.users import UserManager
from llmasos.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from llmasos.storage import Database
from llmasos.storage.schema import UsageRecord

EVIL = "x'); DROP TABLE usage_records; --"


def test_report_groups_and_prices(database: Database) -> None:
    users = UserManager(database)
    root = users.create("root")
    alice = users.create("alice")
    usage = UsageLog(database)
    for who, model, prompt, completion in [
        (root, "smollm2:135m", 1000, 2000),
        (alice, "smollm2:135m", 500, 0),
        (alice, EVIL, 10, 10),
    ]:
        principal = Principal(user_id=who.id, name=who.name, role=who.role, key_id="k1")
        usage.record(
            principal, model=model, endpoint="/v1/chat/completions",
            prompt_tokens=prompt, completion_tokens=completion, latency_ms=100, status=200,
            app=EVIL,
        )  # fmt: skip
    PriceTable(database).set("smollm2", prompt_per_1k=1.0, completion_per_1k=2.0)
    by_user = {row.group: row for row in usage.report(by="user")}
    assert by_user["root"].cost == pytest.approx(5.0)
    assert by_user["root"].priced and not by_user["alice"].priced
    assert by_user["alice"].prompt_tokens == 510 and by_user["alice"].requests == 2
    by_model = {row.group: row for row in usage.report(by="model")}
    assert set(by_model) == {"smollm2:135m", EVIL}
    assert {row.group for row in usage.report(by="app")} == {EVIL}
    assert usage.report(since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_price_for_and_usage_cost_follow_the_reports_rule(database: Database) -> None:
    prices = PriceTable(database)
    prices.set("smollm2", prompt_per_1k=1.0, completion_per_1k=2.0)
    prices.set("smollm2:1.7b", prompt_per_1k=4.0, completion_per_1k=8.0)
    base = prices.price_for("smollm2:135m")  # no entry of its own: the base name's
    own = prices.price_for("smollm2:1.7b")
    assert base is not None and base.model == "smollm2"
    assert own is not None and own.model == "smollm2:1.7b"
    assert prices.price_for("qwen3:0.6b") is None
    assert usage_cost(base, 1000, 500) == pytest.approx(2.0)
    assert usage_cost(own, 1000, 500) == pytest.approx(8.0)
    assert usage_cost(None, 0, 0) == 0.0  # no tokens: nothing to price
    assert usage_cost(None, 3, 0) is None  # tokens of a model without a price: unknown
    assert prices.price_for(EVIL) is None


def test_report_by_day_is_a_series_of_utc_dates(database: Database) -> None:
    users = UserManager(database)
    alice = users.create("alice")
    usage = UsageLog(database)
    principal = Principal(user_id=alice.id, name="alice", role="user")
    for tokens in (3, 4):
        usage.record(
            principal, model="m", endpoint="/x",
            prompt_tokens=tokens, completion_tokens=1, latency_ms=1, status=200,
        )  # fmt: skip
    with database.session() as session:  # move the first row to yesterday
        first = session.scalars(select(UsageRecord).order_by(UsageRecord.id)).first()
        assert first is not None
        first.created_at = first.created_at - timedelta(days=1)
    rows = usage.report(by="day")
    today = datetime.now(UTC).date()
    assert [row.group for row in rows] == [str(today - timedelta(days=1)), str(today)]
    assert [row.prompt_tokens for row in rows] == [3, 4]


def test_a_non_admin_sees_only_their_own_usage(database: Database) -> None:
    users = UserManager(database)
    users.create("root")
    alice = users.create("alice")
    bob = users.create("bob")
    usage = UsageLog(database)
    for who in (alice, bob):
        usage.record(
            Principal(user_id=who.id, name=who.name, role="user"), model="m", endpoint="/x",
            prompt_tokens=1, completion_tokens=1, latency_ms=1, status=200,
        )  # fmt: skip
    alice_p = Principal(user_id=alice.id, name="alice", role="user")
    assert [r.group for r in usage.report(actor=alice_p)] == ["alice"]
    with pytest.raises(NotFoundError):
        usage.report(user="bob", actor=alice_p)
    with pytest.raises(PermissionDeniedError):
        PriceTable(database).set("m", prompt_per_1k=0, completion_per_1k=0, actor=alice_p)


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        parse_since("yesterday'; --")
    assert parse_since("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_since("1d") < datetime.now(UTC) - timedelta(hours=23)


def test_prices_refuse_nonsense(database: Database) -> None:
    prices = PriceTable(database)
    with pytest.raises(InvalidRequestError):
        prices.set("m", prompt_per_1k=float("nan"), completion_per_1k=0)
    with pytest.raises(InvalidRequestError):
        prices.set("has space", prompt_per_1k=1, completion_per_1k=1)
    prices.set(EVIL.replace(" ", ""), prompt_per_1k=1, completion_per_1k=1)
    assert [p.model for p in prices.list()] == [EVIL.replace(" ", "")]
    with pytest.raises(InvalidRequestError):
        UsageLog(database).report(by="user; DROP TABLE users")

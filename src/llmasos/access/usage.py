"""Usage metering and the price table that turns tokens into cost.

`UsageLog.record` appends one row per metered request (user, key, app, model, endpoint,
prompt and completion tokens, latency, HTTP status). `UsageLog.report` sums rows since a
moment, grouped by user, model or app, and prices them with `PriceTable`: a model's price is
its exact entry, else the entry of its base name (``smollm2`` prices every ``smollm2:*``),
else nothing (cost 0, and the report says the price is unknown). `usage_cost` is that rule
for one record's tokens; the workflow engine prices each node's tokens with it too (through
`PriceTable.price_for`). Reading usage of everyone, and setting prices, is for admins; a
non-admin actor sees only their own rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.access.audit import AuditLog
from llmasos.access.principal import Principal
from llmasos.access.users import require_admin
from llmasos.config import parse_duration
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.storage.database import Database
from llmasos.storage.schema import ModelPrice, UsageRecord, utcnow

GROUPS = ("user", "model", "app", "key", "day")
MAX_MODEL_NAME = 255
MAX_PRICE = 1e9


@dataclass(frozen=True)
class UsageRow:
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    average_latency_ms: float
    cost: float
    priced: bool
    """False when some of the group's tokens are of a model without a price."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos usage --json`` show of a group's usage."""
        return {
            "group": self.group,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "average_latency_ms": round(self.average_latency_ms, 1),
            "cost": self.cost,
            "priced": self.priced,
        }


@dataclass(frozen=True)
class Price:
    model: str
    prompt_per_1k: float
    completion_per_1k: float
    updated_at: datetime

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_per_1k + completion_tokens * self.completion_per_1k
        ) / 1000

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos prices list --json`` show of a price."""
        return asdict(self)


def usage_cost(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What these tokens cost at ``price``: 0 when no token was used, None when tokens
    were used of a model without a price (unknown, not free)."""
    if not prompt_tokens and not completion_tokens:
        return 0.0
    if price is None:
        return None
    return price.cost(prompt_tokens, completion_tokens)


def _check_model_name(model: str) -> str:
    if not model or len(model) > MAX_MODEL_NAME or not model.isprintable() or " " in model:
        raise InvalidRequestError(
            f"invalid model name {model[:80]!r}: 1-{MAX_MODEL_NAME} printable characters, "
            "no spaces",
            param="model",
        )
    return model


def _check_price(value: float, name: str) -> float:
    if not 0 <= value <= MAX_PRICE:  # also refuses NaN
        raise InvalidRequestError(f"{name} must be between 0 and {MAX_PRICE:g}", param=name)
    return float(value)


class PriceTable:
    """Per-model prices per 1,000 prompt and completion tokens."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.audit = AuditLog(database)

    def set(
        self,
        model: str,
        *,
        prompt_per_1k: float,
        completion_per_1k: float,
        actor: Principal | None = None,
    ) -> Price:
        require_admin(actor, "set prices")
        _check_model_name(model)
        _check_price(prompt_per_1k, "prompt_per_1k")
        _check_price(completion_per_1k, "completion_per_1k")
        for _attempt in range(2):  # two first writers of one model: the loser updates
            try:
                with self.database.session(write=True) as session:
                    row = session.scalar(select(ModelPrice).where(ModelPrice.model == model))
                    if row is None:
                        row = ModelPrice(model=model, prompt_per_1k=0.0, completion_per_1k=0.0)
                        session.add(row)
                    row.prompt_per_1k = float(prompt_per_1k)
                    row.completion_per_1k = float(completion_per_1k)
                    row.updated_at = utcnow()
                    session.flush()
                    self.audit.record(
                        "price.set",
                        actor=actor,
                        target=model,
                        detail=f"prompt={prompt_per_1k}/1k completion={completion_per_1k}/1k",
                        session=session,
                    )
                    return Price(model, row.prompt_per_1k, row.completion_per_1k, row.updated_at)
            except IntegrityError:
                continue
        raise InvalidRequestError(f"the price of {model} changed concurrently; try again")

    def remove(self, model: str, *, actor: Principal | None = None) -> None:
        require_admin(actor, "remove prices")
        with self.database.session(write=True) as session:
            row = session.scalar(select(ModelPrice).where(ModelPrice.model == model[:255]))
            if row is None:
                raise NotFoundError(f"no price for {model[:80]!r}", code="price_not_found")
            session.delete(row)
            self.audit.record("price.remove", actor=actor, target=model, session=session)

    def list(self) -> list[Price]:
        with self.database.session() as session:
            rows = session.scalars(select(ModelPrice).order_by(ModelPrice.model)).all()
            return [
                Price(r.model, r.prompt_per_1k, r.completion_per_1k, r.updated_at) for r in rows
            ]

    def lookup(self, prices: dict[str, Price], model: str) -> Price | None:
        return prices.get(model) or prices.get(model.split(":", 1)[0])

    def price_for(self, model: str, *, session: Session | None = None) -> Price | None:
        """The price of one model (its own entry, else its base name's), read in
        ``session`` when given (one indexed query)."""
        if session is None:
            with self.database.session() as own:
                return self.price_for(model, session=own)
        names = {model[:MAX_MODEL_NAME], model.split(":", 1)[0][:MAX_MODEL_NAME]}
        rows = session.scalars(select(ModelPrice).where(ModelPrice.model.in_(names)))
        prices = {
            r.model: Price(r.model, r.prompt_per_1k, r.completion_per_1k, r.updated_at)
            for r in rows
        }
        return self.lookup(prices, model)


class UsageLog:
    """Append usage rows and report them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.prices = PriceTable(database)

    def record(
        self,
        principal: Principal,
        *,
        model: str,
        endpoint: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
        status: int,
        app: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Append one usage row; in ``session`` when given (the caller's transaction)."""
        row = UsageRecord(
            created_at=utcnow(),
            user_id=principal.user_id,
            user_name=principal.name[:64],
            key_id=principal.key_id,
            app=app[:64] if app else None,
            model=model[:255],
            endpoint=endpoint[:64],
            prompt_tokens=max(0, prompt_tokens),
            completion_tokens=max(0, completion_tokens),
            latency_ms=max(0, latency_ms),
            status=status,
        )
        if session is not None:
            session.add(row)
            return
        with self.database.session(write=True) as own:
            own.add(row)

    def report(
        self,
        *,
        by: str = "user",
        since: datetime | None = None,
        user: str | None = None,
        actor: Principal | None = None,
    ) -> list[UsageRow]:
        """Usage since ``since`` grouped ``by`` user, model, app or key, largest first, or
        by ``day`` (UTC dates, oldest first)."""
        if by not in GROUPS:
            raise InvalidRequestError(f"group usage by one of {', '.join(GROUPS)}", param="by")
        if actor is not None and not actor.is_admin:
            if user is not None and user != actor.name:
                raise NotFoundError(f"no user named {user[:80]!r}", code="user_not_found")
            user = actor.name
        column = {
            "user": UsageRecord.user_name,
            "model": UsageRecord.model,
            "app": UsageRecord.app,
            "key": UsageRecord.key_id,
            "day": func.date(UsageRecord.created_at),
        }[by]
        query = select(
            column,
            UsageRecord.model,
            func.count(),
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.completion_tokens),
            func.sum(UsageRecord.latency_ms),
        ).group_by(column, UsageRecord.model)
        if since is not None:
            query = query.where(UsageRecord.created_at >= since)
        if user is not None:
            query = query.where(UsageRecord.user_name == user)
        prices = {p.model: p for p in self.prices.list()}
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 1])
        with self.database.session() as session:
            for group, model, count, prompt, completion, latency in session.execute(query):
                entry = totals[str(group) if group is not None else "-"]
                entry[0] += count
                entry[1] += int(prompt or 0)
                entry[2] += int(completion or 0)
                entry[3] += int(latency or 0)
                cost = usage_cost(
                    self.prices.lookup(prices, model), int(prompt or 0), int(completion or 0)
                )
                if cost is None:
                    entry[5] = 0
                else:
                    entry[4] += cost
        rows = [
            UsageRow(
                group=group,
                requests=int(entry[0]),
                prompt_tokens=int(entry[1]),
                completion_tokens=int(entry[2]),
                average_latency_ms=entry[3] / entry[0] if entry[0] else 0.0,
                cost=round(entry[4], 6),
                priced=bool(entry[5]),
            )
            for group, entry in totals.items()
        ]
        if by == "day":  # a series, oldest day first
            return sorted(rows, key=lambda r: r.group)
        return sorted(rows, key=lambda r: (-r.total_tokens, -r.requests, r.group))


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A moment from ``2025-01-31``, an ISO datetime (UTC unless it says otherwise), or a
    duration back from now such as ``7d``, ``12h`` or ``30m``."""
    value = text.strip()
    if value and value[-1] in "smhd" and value[:-1].replace(".", "", 1).isdigit():
        seconds = parse_duration(value) or 0.0
        return (now or utcnow()) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"invalid date {text[:80]!r}: use YYYY-MM-DD, an ISO datetime, or e.g. 7d / 12h",
            param="since",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

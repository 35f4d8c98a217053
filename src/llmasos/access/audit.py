"""The append-only audit log: who did what to what, and whether it was allowed.

`AuditLog.record` adds one event, inside the caller's transaction when one is given (so an
action and its audit record commit together) or in its own. There is no update or delete
API, and the database itself refuses UPDATE and DELETE on the table (triggers in migration
0002). Actions are dotted names: ``user.create``, ``user.set_role``, ``key.create``,
``key.revoke``, ``auth.sign_in``, ``auth.denied``, ``model.pull`` ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmasos.access.principal import LOCAL_OWNER, Principal
from llmasos.storage.database import Database
from llmasos.storage.schema import AuditEvent, utcnow

OUTCOMES = ("ok", "denied", "error")


@dataclass(frozen=True)
class AuditRecord:
    id: int
    created_at: datetime
    actor: str | None
    key_id: str | None
    action: str
    target: str | None
    outcome: str
    detail: str | None

    def public(self) -> dict[str, Any]:
        """What the admin API and ``llmasos audit --json`` show of an event."""
        return asdict(self)


class AuditLog:
    """Append and read audit events."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        action: str,
        *,
        actor: Principal | None = None,
        target: str | None = None,
        outcome: str = "ok",
        detail: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Append one event; with ``session`` it commits or rolls back with the caller."""
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}")
        event = AuditEvent(
            created_at=utcnow(),
            actor=(actor.name if actor else LOCAL_OWNER)[:64],
            key_id=actor.key_id if actor else None,
            action=action[:64],
            target=target[:255] if target is not None else None,
            outcome=outcome,
            detail=detail,
        )
        if session is not None:
            session.add(event)
            return
        with self.database.session(write=True) as own:
            own.add(event)

    def list(
        self, *, since: datetime | None = None, actor: str | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Events oldest first, optionally from ``since`` on and by one actor."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if since is not None:
            query = query.where(AuditEvent.created_at >= since)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        with self.database.session() as session:
            rows = session.scalars(query.limit(limit)).all()
            return [
                AuditRecord(
                    id=row.id,
                    created_at=row.created_at,
                    actor=row.actor,
                    key_id=row.key_id,
                    action=row.action,
                    target=row.target,
                    outcome=row.outcome,
                    detail=row.detail,
                )
                for row in rows
            ]

"""Workflow definitions, runs and steps in the database, each owned by a user.

Every read and write names the owner (``user_id``; None is the machine's owner with
authentication off), so another user's workflow or run is simply not found (404). A step
row is written when its node starts and updated when it ends; `WorkflowStore.steps` is
what a resumed run reads to skip finished nodes. Calls are short synchronous transactions
made from the event loop: a step's record costs one commit (measured in docs/benchmarks.md).
With a content cipher (as every server has), the inputs and outputs of runs and steps are
stored sealed (`Sealer`), like conversations and memories; the clear columns stay empty.
Rows written in clear before sealing existed are sealed by `WorkflowStore.seal_clear_rows`,
which a server runs at start. A finished step's ``cost`` is its tokens priced by the OS's
price table at that moment (`llmasos.access.usage.usage_cost`, as usage reports price
requests): 0 without tokens, None when the model has no price.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from llmasos.access.principal import Principal
from llmasos.access.usage import PriceTable, UsageLog, usage_cost
from llmasos.errors import InvalidRequestError, NotFoundError, StorageError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.ids import new_id
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import (
    WORKFLOW_RUN_INPUTS_CONTEXT,
    WORKFLOW_RUN_OUTPUT_CONTEXT,
    WORKFLOW_STEP_INPUTS_CONTEXT,
    WORKFLOW_STEP_OUTPUT_CONTEXT,
    User,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowStep,
    owned_by,
    utcnow,
)
from llmasos.workflows.definition import Workflow, load_workflow

FINISHED: Final = ("succeeded", "failed", "cancelled")
for _table, _column, _context in (
    (WorkflowRun, "sealed_inputs", WORKFLOW_RUN_INPUTS_CONTEXT),
    (WorkflowRun, "sealed_output", WORKFLOW_RUN_OUTPUT_CONTEXT),
    (WorkflowStep, "sealed_inputs", WORKFLOW_STEP_INPUTS_CONTEXT),
    (WorkflowStep, "sealed_output", WORKFLOW_STEP_OUTPUT_CONTEXT),
):
    register_encrypted_column(_table.__table__, _column, context=_context)  # type: ignore[arg-type]
ACTIVE: Final = ("queued", "running", "waiting")
MAX_SOURCE_CHARS: Final = 200_000
MAX_LIST: Final = 100


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StoredWorkflow:
    id: str
    user_id: int | None
    name: str
    source: str
    schedule: str | None
    created_at: datetime
    updated_at: datetime

    def workflow(self) -> Workflow:
        return load_workflow(self.source, name=self.name)


@dataclass(frozen=True)
class RunRecord:
    id: str
    user_id: int | None
    workflow: str
    source: str
    status: str
    trigger: str
    inputs: dict[str, Any]
    output: Any
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass
class StepWrite:
    """A step row to write: a node that started, or one that finished."""

    key: str
    node_type: str
    status: str
    output: Any = None
    error: str | None = None
    attempts: int = 1
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_key: str | None = None
    inputs: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost: float | None = None
    """Set by the store when it writes the finished step (priced from the price table)."""


@dataclass(frozen=True)
class StepRecord:
    key: str
    node_type: str
    status: str
    inputs: Any
    output: Any
    error: str | None
    attempts: int
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    started_at: datetime
    finished_at: datetime | None
    cost: float | None = None
    """The tokens' cost when the node finished; None while it runs, or when the model had
    no price."""


def _workflow(row: WorkflowDefinition) -> StoredWorkflow:
    return StoredWorkflow(
        row.id, row.user_id, row.name, row.source, row.schedule, row.created_at, row.updated_at
    )


class Sealer:
    """JSON values sealed with the content cipher, or kept in clear without one."""

    def __init__(self, cipher: ContentCipher | None) -> None:
        self.cipher = cipher

    def seal(self, value: Any, context: str, ident: object) -> bytes | None:
        if self.cipher is None or value is None:
            return None
        return self.cipher.encrypt(json.dumps(value), context=context.format(id=ident))

    def open(self, token: bytes | None, clear: Any, context: str, ident: object) -> Any:
        if token is None:
            return clear
        if self.cipher is None:
            raise StorageError("this workflow record is sealed, and no content key was given")
        return json.loads(self.cipher.decrypt_text(token, context=context.format(id=ident)))

    def run(self, row: WorkflowRun) -> RunRecord:
        return RunRecord(
            row.id,
            row.user_id,
            row.workflow,
            row.source,
            row.status,
            row.trigger,
            dict(self.open(row.sealed_inputs, row.inputs, WORKFLOW_RUN_INPUTS_CONTEXT, row.id)),
            self.open(row.sealed_output, row.output, WORKFLOW_RUN_OUTPUT_CONTEXT, row.id),
            row.error,
            row.created_at,
            row.finished_at,
        )

    def step(self, row: WorkflowStep) -> StepRecord:
        return StepRecord(
            row.key,
            row.node_type,
            row.status,
            self.open(row.sealed_inputs, row.inputs, WORKFLOW_STEP_INPUTS_CONTEXT, row.id),
            self.open(row.sealed_output, row.output, WORKFLOW_STEP_OUTPUT_CONTEXT, row.id),
            row.error,
            row.attempts,
            row.model,
            row.prompt_tokens,
            row.completion_tokens,
            row.started_at,
            row.finished_at,
            row.cost,
        )

    def set_step_inputs(self, row: WorkflowStep, value: Any) -> None:
        if self.cipher is None:
            row.inputs = value
        else:
            row.inputs, row.sealed_inputs = (
                None,
                self.seal(value, WORKFLOW_STEP_INPUTS_CONTEXT, row.id),
            )

    def set_step_output(self, row: WorkflowStep, value: Any) -> None:
        if self.cipher is None:
            row.output = value
        else:
            row.output, row.sealed_output = (
                None,
                self.seal(value, WORKFLOW_STEP_OUTPUT_CONTEXT, row.id),
            )


class WorkflowStore:
    def __init__(self, database: Database, cipher: ContentCipher | None = None) -> None:
        self.database = database
        self.sealer = Sealer(cipher)
        self.prices = PriceTable(database)
        self.usage = UsageLog(database)

    # -- definitions -----------------------------------------------------------------------

    def create(
        self, user_id: int | None, source: str, *, replace: bool = False
    ) -> tuple[StoredWorkflow, str]:
        """Store a validated definition; returns it and its new webhook token (shown once).
        A name already taken is a 409 unless ``replace`` (the token is then kept)."""
        if len(source) > MAX_SOURCE_CHARS:
            raise InvalidRequestError(f"a workflow is at most {MAX_SOURCE_CHARS} characters")
        workflow = load_workflow(source)
        token = "wh_" + secrets.token_hex(16)
        now = utcnow()
        with self.database.session(write=True) as session:
            row = session.scalar(
                select(WorkflowDefinition).where(
                    owned_by(WorkflowDefinition.user_id, user_id),
                    WorkflowDefinition.name == workflow.name,
                )
            )
            if row is not None and not replace:
                raise InvalidRequestError(
                    f"a workflow named {workflow.name!r} exists; delete it or replace it",
                    param="name",
                    code="workflow_exists",
                )
            if row is None:
                row = WorkflowDefinition(
                    id=new_id("wf"),
                    user_id=user_id,
                    name=workflow.name,
                    hook_hash=token_hash(token),
                    created_at=now,
                )
                session.add(row)
            else:
                token = ""
            row.source = source
            row.schedule = workflow.schedule
            row.updated_at = now
            session.flush()
            return _workflow(row), token

    def get(self, user_id: int | None, name: str) -> StoredWorkflow:
        with self.database.session() as session:
            row = session.scalar(
                select(WorkflowDefinition).where(
                    owned_by(WorkflowDefinition.user_id, user_id), WorkflowDefinition.name == name
                )
            )
            if row is None:
                raise NotFoundError(f"no workflow named {name[:80]!r}", code="workflow_not_found")
            return _workflow(row)

    def list_workflows(self, user_id: int | None) -> list[StoredWorkflow]:
        with self.database.session() as session:
            rows = session.scalars(
                select(WorkflowDefinition)
                .where(owned_by(WorkflowDefinition.user_id, user_id))
                .order_by(WorkflowDefinition.name)
            )
            return [_workflow(row) for row in rows]

    def delete(self, user_id: int | None, name: str) -> None:
        stored = self.get(user_id, name)
        with self.database.session(write=True) as session:
            session.execute(delete(WorkflowDefinition).where(WorkflowDefinition.id == stored.id))

    def by_hook(self, name: str, token: str) -> StoredWorkflow:
        """The workflow whose webhook this token opens; anything else is a 404."""
        with self.database.session() as session:
            row = session.scalar(
                select(WorkflowDefinition).where(
                    WorkflowDefinition.name == name,
                    WorkflowDefinition.hook_hash == token_hash(token),
                )
            )
            if row is None:
                raise NotFoundError("no such webhook", code="workflow_not_found")
            return _workflow(row)

    def scheduled(self) -> list[tuple[StoredWorkflow, datetime | None]]:
        with self.database.session() as session:
            rows = session.scalars(
                select(WorkflowDefinition).where(WorkflowDefinition.schedule.is_not(None))
            )
            return [(_workflow(row), row.last_scheduled_at) for row in rows]

    def mark_scheduled(self, workflow_id: str, minute: datetime) -> bool:
        """Claim this minute's scheduled run; False when another claim got there first."""
        with self.database.session(write=True) as session:
            result = session.execute(
                update(WorkflowDefinition)
                .where(
                    WorkflowDefinition.id == workflow_id,
                    (WorkflowDefinition.last_scheduled_at.is_(None))
                    | (WorkflowDefinition.last_scheduled_at < minute),
                )
                .values(last_scheduled_at=minute)
            )
            return bool(getattr(result, "rowcount", 0))

    # -- runs ------------------------------------------------------------------------------

    def create_run(
        self, user_id: int | None, workflow: Workflow, inputs: dict[str, Any], trigger: str
    ) -> RunRecord:
        row = WorkflowRun(
            id=new_id("run"),
            user_id=user_id,
            workflow=workflow.name,
            source=workflow.source,
            status="queued",
            trigger=trigger,
            inputs={} if self.sealer.cipher else inputs,
            created_at=utcnow(),
        )
        row.sealed_inputs = self.sealer.seal(inputs, WORKFLOW_RUN_INPUTS_CONTEXT, row.id)
        with self.database.session(write=True) as session:
            session.add(row)
            session.flush()
            return self.sealer.run(row)

    def run(self, user_id: int | None, run_id: str) -> RunRecord:
        with self.database.session() as session:
            row = session.scalar(
                select(WorkflowRun).where(
                    WorkflowRun.id == run_id, owned_by(WorkflowRun.user_id, user_id)
                )
            )
            if row is None:
                raise NotFoundError(f"no run {run_id[:80]!r}", code="run_not_found")
            return self.sealer.run(row)

    def runs(self, user_id: int | None, workflow: str | None = None) -> list[RunRecord]:
        query = select(WorkflowRun).where(owned_by(WorkflowRun.user_id, user_id))
        if workflow is not None:
            query = query.where(WorkflowRun.workflow == workflow)
        query = query.order_by(WorkflowRun.created_at.desc()).limit(MAX_LIST)
        with self.database.session() as session:
            return [self.sealer.run(row) for row in session.scalars(query)]

    def unfinished_runs(self) -> list[RunRecord]:
        """Every run a crash may have interrupted (queued or running), oldest first."""
        with self.database.session() as session:
            rows = session.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.status.in_(("queued", "running")))
                .order_by(WorkflowRun.created_at)
            )
            return [self.sealer.run(row) for row in rows]

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        only_from: tuple[str, ...] | None = None,
        deferred: Sequence[StepWrite] = (),
    ) -> bool:
        values: dict[str, Any] = {"status": status}
        if status in FINISHED:
            values.update(output=output, error=error, finished_at=utcnow())
            if self.sealer.cipher is not None:
                values.update(
                    output=None,
                    sealed_output=self.sealer.seal(output, WORKFLOW_RUN_OUTPUT_CONTEXT, run_id),
                )
        query = update(WorkflowRun).where(WorkflowRun.id == run_id)
        if only_from is not None:
            query = query.where(WorkflowRun.status.in_(only_from))
        with self.database.session(write=True) as session:
            if deferred:
                _write(session, run_id, deferred, True, self.sealer, self.prices, self.usage)
            result = session.execute(query.values(**values))
            return bool(getattr(result, "rowcount", 0))

    # -- leases: one executing engine per run ------------------------------------------------

    def claim(self, run_id: str, owner: str, seconds: float) -> bool:
        """Take the run's lease for ``owner`` if it is free, expired or already ``owner``'s
        and the run is still to execute; whether ``owner`` holds it now."""
        now = utcnow()
        query = (
            update(WorkflowRun)
            .where(
                WorkflowRun.id == run_id,
                WorkflowRun.status.in_(("queued", "running")),
                or_(
                    WorkflowRun.lease_owner.is_(None),
                    WorkflowRun.lease_owner == owner,
                    WorkflowRun.lease_expires_at < now,
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
        )
        with self.database.session(write=True) as session:
            return bool(getattr(session.execute(query), "rowcount", 0))

    def renew(self, run_id: str, owner: str, seconds: float) -> str | None:
        """Extend ``owner``'s lease; the run's status, or None when the lease is lost."""
        query = (
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, WorkflowRun.lease_owner == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
        )
        with self.database.session(write=True) as session:
            if not getattr(session.execute(query), "rowcount", 0):
                return None
            return session.scalar(select(WorkflowRun.status).where(WorkflowRun.id == run_id))

    def release(self, run_id: str, owner: str) -> None:
        with self.database.session(write=True) as session:
            session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id == run_id, WorkflowRun.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def free_leases(self, is_dead: Callable[[str], bool]) -> int:
        """Free the leases of unfinished runs whose owner ``is_dead``; how many runs."""
        freed = 0
        with self.database.session(write=True) as session:
            owners = session.scalars(
                select(WorkflowRun.lease_owner)
                .where(
                    WorkflowRun.status.in_(("queued", "running")),
                    WorkflowRun.lease_owner.is_not(None),
                )
                .distinct()
            ).all()
            for owner in owners:
                if owner is not None and is_dead(owner):
                    result = session.execute(
                        update(WorkflowRun)
                        .where(WorkflowRun.lease_owner == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                    )
                    freed += int(getattr(result, "rowcount", 0))
        return freed

    def orphaned_runs(self, grace_seconds: float) -> list[RunRecord]:
        """Runs to execute that no engine holds: their lease expired (a server stopped), or
        they were never claimed though older than ``grace_seconds``."""
        now = utcnow()
        with self.database.session() as session:
            rows = session.scalars(
                select(WorkflowRun)
                .where(
                    WorkflowRun.status.in_(("queued", "running")),
                    or_(
                        WorkflowRun.lease_expires_at < now,
                        and_(
                            WorkflowRun.lease_owner.is_(None),
                            WorkflowRun.created_at < now - timedelta(seconds=grace_seconds),
                        ),
                    ),
                )
                .order_by(WorkflowRun.created_at)
            )
            return [self.sealer.run(row) for row in rows]

    def status(self, run_id: str) -> str:
        with self.database.session() as session:
            status = session.scalar(select(WorkflowRun.status).where(WorkflowRun.id == run_id))
            return status or "cancelled"

    # -- steps -----------------------------------------------------------------------------

    def steps(self, run_id: str) -> dict[str, StepRecord]:
        with self.database.session() as session:
            rows = session.scalars(
                select(WorkflowStep).where(WorkflowStep.run_id == run_id).order_by(WorkflowStep.id)
            )
            return {row.key: self.sealer.step(row) for row in rows}

    def start_step(
        self,
        run_id: str,
        key: str,
        node_type: str,
        inputs: Any,
        status: str,
        deferred: Sequence[StepWrite] = (),
    ) -> None:
        """Record that a node started (``running``, or ``waiting`` for a human node), with
        the deferred records of pure nodes before it in the same transaction."""
        start = StepWrite(key, node_type, status, inputs=inputs, started_at=utcnow())
        self.write_steps(run_id, [*deferred, start], finished=False)

    def finish_step(self, run_id: str, step: StepWrite, deferred: Sequence[StepWrite] = ()) -> None:
        self.write_steps(run_id, [*deferred, step])

    def write_steps(
        self, run_id: str, steps: Sequence[StepWrite], *, finished: bool = True
    ) -> None:
        """Insert or update these step rows in one transaction (one commit)."""
        if not steps:
            return
        with self.database.session(write=True) as session:
            _write(session, run_id, steps, finished, self.sealer, self.prices, self.usage)

    def answer(self, user_id: int | None, run_id: str, node: str, answer: Any) -> None:
        """Record a person's answer to a waiting human node; a second answer is a 409."""
        self.run(user_id, run_id)  # 404 for another user's run
        with self.database.session(write=True) as session:
            row = session.scalar(
                select(WorkflowStep).where(WorkflowStep.run_id == run_id, WorkflowStep.key == node)
            )
            if row is None or row.node_type != "human":
                raise NotFoundError(
                    f"run {run_id} has no human node {node[:80]!r} waiting", code="node_not_found"
                )
            if row.status != "waiting":
                raise AlreadyAnsweredError(f"node {node!r} of run {run_id} was already answered")
            row.status = "succeeded"
            self.sealer.set_step_output(row, {"answer": answer})
            row.attempts = 1
            row.cost = 0.0
            row.finished_at = utcnow()

    def seal_clear_rows(self, batch: int = 500) -> int:
        """Seal the inputs and outputs that runs and steps hold in clear (rows written
        before sealing existed, or by a server without a cipher); how many rows changed.
        Nothing without a cipher. A server runs it at start, so no clear value outlives an
        upgrade; a row sealed here reads exactly as before. Idempotent; in transactions
        of ``batch`` rows."""
        if self.sealer.cipher is None:
            return 0
        changed = 0
        tables: list[tuple[type[WorkflowRun] | type[WorkflowStep], Any]] = [
            (
                WorkflowRun,
                or_(WorkflowRun.sealed_inputs.is_(None), WorkflowRun.output.is_not(None)),
            ),
            (WorkflowStep, or_(WorkflowStep.inputs.is_not(None), WorkflowStep.output.is_not(None))),
        ]
        for table, clear in tables:
            after: Any = "" if table is WorkflowRun else 0
            while True:
                with self.database.session(write=True) as session:
                    query = select(table).where(clear, table.id > after).order_by(table.id)
                    rows: list[WorkflowRun | WorkflowStep] = list(
                        session.scalars(query.limit(batch))
                    )
                    for row in rows:
                        self._seal_row(row)
                if not rows:
                    break
                after = rows[-1].id
                changed += len(rows)
        return changed

    def _seal_row(self, row: WorkflowRun | WorkflowStep) -> None:
        sealer = self.sealer
        if isinstance(row, WorkflowRun):
            if row.sealed_inputs is None:
                row.sealed_inputs = sealer.seal(row.inputs, WORKFLOW_RUN_INPUTS_CONTEXT, row.id)
                row.inputs = {}
            if row.output is not None and row.sealed_output is None:
                row.sealed_output = sealer.seal(row.output, WORKFLOW_RUN_OUTPUT_CONTEXT, row.id)
            row.output = None
            flag_modified(row, "output")  # a JSON null becomes SQL NULL, not selected again
            return
        if row.inputs is not None and row.sealed_inputs is None:
            sealer.set_step_inputs(row, row.inputs)
        if row.output is not None and row.sealed_output is None:
            sealer.set_step_output(row, row.output)
        row.inputs = row.output = None
        flag_modified(row, "inputs")
        flag_modified(row, "output")

    def clear_failed_steps(self, run_id: str) -> None:
        """Forget failed, skipped and interrupted steps, so a resumed run tries them again."""
        _clear(self.database, run_id)

    def cached(self, user_id: int | None, cache_key: str) -> StepRecord | None:
        """The newest succeeded step of this owner's runs with the same cache key."""
        with self.database.session() as session:
            row = session.scalar(
                select(WorkflowStep)
                .join(WorkflowRun, WorkflowRun.id == WorkflowStep.run_id)
                .where(
                    WorkflowStep.cache_key == cache_key,
                    WorkflowStep.status == "succeeded",
                    owned_by(WorkflowRun.user_id, user_id),
                )
                .order_by(WorkflowStep.id.desc())
                .limit(1)
            )
            return self.sealer.step(row) if row is not None else None


class AlreadyAnsweredError(InvalidRequestError):
    status_code = 409
    default_code = "already_answered"


def _clear(database: Database, run_id: str) -> None:
    with database.session(write=True) as session:
        session.execute(
            delete(WorkflowStep).where(
                WorkflowStep.run_id == run_id,
                WorkflowStep.status.in_(("failed", "skipped", "running")),
            )
        )


def _owner(session: Session, run_id: str) -> Principal | None:
    """Whom a run's usage is charged to: its owner; None for the machine's owner without
    authentication (whose HTTP requests are not metered either)."""
    found = session.execute(
        select(User.id, User.name, User.role)
        .join(WorkflowRun, WorkflowRun.user_id == User.id)
        .where(WorkflowRun.id == run_id)
    ).first()
    if found is None:
        return None
    return Principal(user_id=found.id, name=found.name, role=found.role)


def _write(
    session: Session,
    run_id: str,
    steps: Sequence[StepWrite],
    finished: bool,
    sealer: Sealer,
    prices: PriceTable,
    usage: UsageLog,
) -> None:
    """Insert or update step rows; the last one only as started unless ``finished``. A
    finished step that used tokens is priced, and metered: a usage row of the run's owner
    (endpoint ``/v1/workflows``) in the same transaction, so usage reports count it once."""
    owner: list[Principal | None] = []
    keys = [step.key for step in steps]
    rows = {
        row.key: row
        for row in session.scalars(
            select(WorkflowStep).where(WorkflowStep.run_id == run_id, WorkflowStep.key.in_(keys))
        )
    }
    last = len(steps) - 1
    for index, step in enumerate(steps):
        row = rows.get(step.key)
        if row is None:
            row = WorkflowStep(
                run_id=run_id,
                key=step.key,
                node_type=step.node_type,
                status=step.status,
                started_at=step.started_at or utcnow(),
                attempts=0,
            )
            session.add(row)
            rows[step.key] = row
            if sealer.cipher is not None:
                session.flush()  # the row's id is in its sealed values' context
        row.status = step.status
        row.started_at = step.started_at or row.started_at or utcnow()
        if index == last and not finished:
            sealer.set_step_inputs(row, step.inputs)
            continue
        if step.inputs is not None:
            sealer.set_step_inputs(row, step.inputs)
        sealer.set_step_output(row, step.output)
        row.error = step.error
        row.attempts = step.attempts
        row.model = step.model
        row.prompt_tokens = step.prompt_tokens
        row.completion_tokens = step.completion_tokens
        row.cache_key = step.cache_key
        row.finished_at = step.finished_at or utcnow()
        used = step.prompt_tokens or step.completion_tokens
        price = prices.price_for(step.model, session=session) if used and step.model else None
        step.cost = row.cost = usage_cost(price, step.prompt_tokens, step.completion_tokens)
        if used:
            if not owner:
                owner.append(_owner(session, run_id))
            if owner[0] is not None:
                usage.record(
                    owner[0],
                    model=step.model or "-",
                    endpoint="/v1/workflows",
                    prompt_tokens=step.prompt_tokens,
                    completion_tokens=step.completion_tokens,
                    latency_ms=int((row.finished_at - row.started_at).total_seconds() * 1000),
                    status=200 if step.status == "succeeded" else 500,
                    session=session,
                )

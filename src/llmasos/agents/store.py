"""Tasks and their steps in the database, content sealed by the content cipher.

`TaskStore` is synchronous (SQLAlchemy sessions); the runtime calls it from a worker thread.
An owner sees only their own tasks: another user's id is `NotFoundError` (404), the same
answer as an id that does not exist. The instruction, the result and each step's content
(model text, arguments, tool result, approval text) are sealed with `ContentCipher`, bound
to the row's id so a token moved to another row does not open; the columns are registered
for master-key rotation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from llmasos.agents.interface import (
    Budget,
    StepRecord,
    StepStatus,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)
from llmasos.errors import NotFoundError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import (
    TASK_CONTENT_CONTEXT,
    TASK_RESULT_CONTEXT,
    TASK_STEP_CONTENT_CONTEXT,
    AgentTask,
    AgentTaskStep,
    owned_by,
)

register_encrypted_column(AgentTask.__table__, "content", context=TASK_CONTENT_CONTEXT)  # type: ignore[arg-type]
register_encrypted_column(AgentTask.__table__, "result", context=TASK_RESULT_CONTEXT)  # type: ignore[arg-type]
_STEPS: Any = AgentTaskStep.__table__
register_encrypted_column(_STEPS, "content", context=TASK_STEP_CONTENT_CONTEXT)

UNFINISHED = (TaskStatus.QUEUED.label, TaskStatus.RUNNING.label)
FINISHED = tuple(status.label for status in TaskStatus if status.is_finished)


def step_id(task_id: str, number: int) -> str:
    return f"{task_id}:{number}"


class TaskStore:
    def __init__(self, database: Database, cipher: ContentCipher) -> None:
        self.database = database
        self.cipher = cipher

    # --- tasks -----------------------------------------------------------------------------

    def create(self, record: TaskRecord) -> TaskRecord:
        with self.database.session(write=True) as session:
            session.add(
                AgentTask(
                    id=record.id,
                    user_id=record.user_id,
                    status=record.status.label,
                    model=record.spec.model,
                    config={
                        "tools": list(record.spec.tools) if record.spec.tools is not None else None,
                        "granted": list(record.spec.granted),
                        "budget": record.spec.budget.to_dict(),
                        "tool_choice": record.spec.tool_choice,
                        "principal": record.principal,
                    },
                    content=self.cipher.encrypt(
                        record.spec.instruction, context=TASK_CONTENT_CONTEXT.format(id=record.id)
                    ),
                    result=None,
                    steps=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                    elapsed_seconds=0.0,
                    created_at=record.created_at,
                    updated_at=record.created_at,
                )
            )
        return record

    def get(self, owner: int | None, task_id: str) -> TaskRecord:
        """``owner``'s task; `NotFoundError` for any other."""
        with self.database.session() as session:
            row = session.get(AgentTask, task_id)
            if row is None or row.user_id != owner:
                raise NotFoundError(f"no task {task_id[:80]!r}", param="task_id")
            return self._task(row)

    def load(self, task_id: str) -> TaskRecord:
        """Any task, for the runtime (which runs it as its owner)."""
        with self.database.session() as session:
            row = session.get(AgentTask, task_id)
            if row is None:
                raise NotFoundError(f"no task {task_id[:80]!r}", param="task_id")
            return self._task(row)

    def list_tasks(
        self, owner: int | None, *, limit: int = 50, status: str | None = None
    ) -> list[TaskRecord]:
        """Newest first."""
        with self.database.session() as session:
            query = select(AgentTask).where(owned_by(AgentTask.user_id, owner))
            if status is not None:
                query = query.where(AgentTask.status == status)
            query = query.order_by(AgentTask.created_at.desc(), AgentTask.id.desc()).limit(limit)
            return [self._task(row) for row in session.scalars(query)]

    def is_finished(self, task_id: str) -> bool:
        """Whether the task has ended (e.g. cancelled through another server)."""
        with self.database.session() as session:
            status = session.scalar(select(AgentTask.status).where(AgentTask.id == task_id))
        return status is None or status in FINISHED

    def unfinished(self) -> list[str]:
        """Ids of the tasks that were queued or running (a restart resumes them)."""
        with self.database.session() as session:
            query = select(AgentTask.id).where(AgentTask.status.in_(UNFINISHED))
            return list(session.scalars(query.order_by(AgentTask.created_at)))

    def update(
        self,
        task_id: str,
        *,
        status: TaskStatus | None = None,
        result: str | None = None,
        error_code: str | None = None,
        usage: tuple[int, int, int] | None = None,
        elapsed_seconds: float | None = None,
        granted: tuple[str, ...] | None = None,
    ) -> None:
        """Change what is given; ``usage`` is (steps, prompt tokens, completion tokens).
        A status change applies only to a task not finished yet: a finished task (completed,
        stopped, failed, cancelled) keeps its status, whatever races with it."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {"updated_at": now}
        if status is not None:
            values["status"] = status.label
            if status.is_finished:
                values["finished_at"] = now
        if result is not None:
            values["result"] = self.cipher.encrypt(
                result, context=TASK_RESULT_CONTEXT.format(id=task_id)
            )
        if error_code is not None:
            values["error_code"] = error_code[:32]
        if usage is not None:
            values["steps"], values["prompt_tokens"], values["completion_tokens"] = usage
        if elapsed_seconds is not None:
            values["elapsed_seconds"] = elapsed_seconds
        with self.database.session(write=True) as session:
            if granted is not None:
                row = session.get(AgentTask, task_id)
                if row is not None:
                    row.config = {**row.config, "granted": list(granted)}
            statement = update(AgentTask).where(AgentTask.id == task_id)
            if status is not None:
                statement = statement.where(AgentTask.status.not_in(FINISHED))
            session.execute(statement.values(values))

    # --- steps -----------------------------------------------------------------------------

    def steps(self, task_id: str) -> list[StepRecord]:
        with self.database.session() as session:
            rows = session.scalars(
                select(AgentTaskStep)
                .where(AgentTaskStep.task_id == task_id)
                .order_by(AgentTaskStep.number)
            )
            return [self._step(row) for row in rows]

    def save_step(
        self,
        task_id: str,
        owner: int | None,
        step: StepRecord,
        *,
        usage: tuple[int, int, int] | None = None,
        elapsed_seconds: float | None = None,
    ) -> None:
        """Insert or replace step ``step.number`` of the task; with ``usage`` (steps,
        prompt tokens, completion tokens) and ``elapsed_seconds``, update the task in the
        same transaction (one commit per step)."""
        key = step_id(task_id, step.number)
        content = self.cipher.encrypt(
            json.dumps(step.content(), ensure_ascii=False, default=str),
            context=TASK_STEP_CONTENT_CONTEXT.format(id=key),
        )
        now = datetime.now(UTC)
        with self.database.session(write=True) as session:
            row = session.get(AgentTaskStep, key)
            if row is None:
                row = AgentTaskStep(
                    id=key, task_id=task_id, user_id=owner, number=step.number, created_at=now
                )
                session.add(row)
            row.kind = step.kind
            row.status = str(step.status)
            row.tool = step.tool
            row.prompt_tokens = step.prompt_tokens
            row.completion_tokens = step.completion_tokens
            row.model_ms = step.model_ms
            row.tool_ms = step.tool_ms
            row.content = content
            row.updated_at = now
            if usage is not None or elapsed_seconds is not None:
                values: dict[str, Any] = {"updated_at": now}
                if usage is not None:
                    values["steps"], values["prompt_tokens"], values["completion_tokens"] = usage
                if elapsed_seconds is not None:
                    values["elapsed_seconds"] = elapsed_seconds
                session.execute(update(AgentTask).where(AgentTask.id == task_id).values(values))

    def set_step_status(self, task_id: str, number: int, status: StepStatus) -> None:
        with self.database.session(write=True) as session:
            session.execute(
                update(AgentTaskStep)
                .where(AgentTaskStep.id == step_id(task_id, number))
                .values(status=str(status), updated_at=datetime.now(UTC))
            )

    # --- rows -> records -------------------------------------------------------------------

    def _task(self, row: AgentTask) -> TaskRecord:
        config = row.config
        budget = Budget(**config.get("budget", {}))
        tools = config.get("tools")
        spec = TaskSpec(
            instruction=self.cipher.decrypt_text(
                row.content, context=TASK_CONTENT_CONTEXT.format(id=row.id)
            ),
            model=row.model,
            tools=tuple(tools) if tools is not None else None,
            granted=tuple(config.get("granted", ())),
            budget=budget,
            tool_choice=config.get("tool_choice", "auto"),
        )
        result = (
            self.cipher.decrypt_text(row.result, context=TASK_RESULT_CONTEXT.format(id=row.id))
            if row.result is not None
            else None
        )
        return TaskRecord(
            id=row.id,
            user_id=row.user_id,
            status=TaskStatus.of(row.status),
            spec=spec,
            principal=dict(config.get("principal", {})),
            steps=row.steps,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            elapsed_seconds=row.elapsed_seconds,
            result=result,
            error_code=row.error_code,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )

    def _step(self, row: AgentTaskStep) -> StepRecord:
        data = json.loads(
            self.cipher.decrypt_text(
                row.content, context=TASK_STEP_CONTENT_CONTEXT.format(id=row.id)
            )
        )
        return StepRecord(
            number=row.number,
            kind=row.kind,
            status=StepStatus(row.status),
            tool=row.tool,
            arguments=data.get("arguments"),
            result=data.get("result"),
            text=data.get("text") or "",
            description=data.get("description"),
            effects=tuple(data.get("effects") or ()),
            call_id=data.get("call_id"),
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            model_ms=row.model_ms,
            tool_ms=row.tool_ms,
            created_at=row.created_at,
        )


def with_status(step: StepRecord, status: StepStatus, **changes: Any) -> StepRecord:
    return replace(step, status=status, **changes)

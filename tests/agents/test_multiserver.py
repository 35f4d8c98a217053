"""Two servers on one PostgreSQL database (two `Database` handles, two runtimes): a task
running on one is not run again by the other's start-up resume, and a cancel made through
the other stops it at its next step."""

from __future__ import annotations

import asyncio

import pytest

from llmasos.agents import AgentRuntime, TaskSpec, TaskStatus, TaskStore
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry
from llmasos.storage import ContentCipher, Database
from llmasos.tools import ToolSystem
from tests.agents.conftest import ALICE, ScriptedModel

CIPHER = ContentCipher(b"k" * 32)


def runtime(settings: Settings, database: Database, registry: PluginRegistry) -> AgentRuntime:
    model = ScriptedModel()  # each server its own kernel
    model.replies = [("call", "lookup", {"title": f"note {n}"}) for n in range(8)]
    system = ToolSystem(settings=settings, database=database, engine=model)
    return AgentRuntime(TaskStore(database, CIPHER), system, registry=registry)


def requests_of(agents: AgentRuntime) -> int:
    engine = agents.system.engine
    assert isinstance(engine, ScriptedModel)
    return len(engine.requests)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_task_runs_on_one_server_and_stops_when_cancelled_on_another(
    settings: Settings, database: Database, registry: PluginRegistry
) -> None:
    other_database = Database(database.url)
    first = runtime(settings, database, registry)
    second = runtime(settings, other_database, registry)

    async def main() -> None:
        # "slow": each model turn takes about 1.5 s, so the task is mid-run below
        task = await first.create(ALICE, TaskSpec(instruction="Read my notes", model="slow"))
        while (await first.get(ALICE, task.id)).steps < 1:
            await asyncio.sleep(0.05)
        assert await second.resume() == 1  # it is unfinished, but running on the first
        await second.wait(task.id)
        assert requests_of(second) == 0
        cancelled = await second.cancel(ALICE, task.id)
        assert cancelled.status == TaskStatus.CANCELLED
        turns = requests_of(first)
        await asyncio.wait_for(first.wait(task.id), timeout=10)
        assert requests_of(first) <= turns + 1  # the turn in flight, then it stopped
        final = await first.get(ALICE, task.id)
        assert final.status == TaskStatus.CANCELLED and final.steps < 8
        await first.close()
        await second.close()

    try:
        asyncio.run(main())
    finally:
        other_database.close()

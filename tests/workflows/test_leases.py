"""Several engines on one database (two servers on one PostgreSQL, or SQLite file): a run
executes once, a cancel made on another server stops it, a stopped server's runs are taken
over when their lease expires, and a restart on this host frees its dead process's leases at
once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from llmasos.config import Settings
from llmasos.plugins import PluginRegistry
from llmasos.storage import Database
from llmasos.tools import ToolSystem
from llmasos.workflows.engine import _dead_here
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.system import Workflows
from tests.workflows.conftest import CIPHER, Record, Slow

FLOW = """
name: leased
nodes:
  mark: {type: tool, tool: record, arguments: {text: once}}
  nap: {type: tool, tool: slow, arguments: {s: 1.5}, needs: [mark]}
outputs: {done: "{{ nodes.nap.status }}"}
"""


def server(database: Database, record: Record, home: Path, lease: float) -> Workflows:
    """One server's workflows: its own engine (and lease name) over the shared database."""
    registry = PluginRegistry()
    registry.register_tool(record)
    registry.register_tool(Slow())
    system = ToolSystem(Settings(home=home), database, engine=None)  # type: ignore[arg-type]
    workflows = Workflows(database, NodeRuntime(tools=system, registry=registry), CIPHER)
    workflows.engine.lease_seconds = lease
    return workflows


def two_servers(
    database: Database, tmp_path: Path, lease: float
) -> tuple[Record, Workflows, Workflows]:
    record = Record()
    return (
        record,
        server(database, record, tmp_path / "a", lease),
        server(database, record, tmp_path / "b", lease),
    )


async def started(workflows: Workflows) -> str:
    """A run of FLOW started on ``workflows``, once its first node has finished."""
    workflows.store.create(None, FLOW, replace=True)
    run = workflows.start(None, "leased", {})
    while "mark" not in workflows.store.steps(run.id):
        await asyncio.sleep(0.02)
    return run.id


def test_two_servers_execute_a_run_once(database: Database, tmp_path: Path) -> None:
    record, a, b = two_servers(database, tmp_path, lease=3)

    async def go() -> str:
        a.store.create(None, FLOW, replace=True)
        run = a.start(None, "leased", {})
        b.engine._launch(b.store.run(None, run.id))  # b tries too (a restart, a sweep)
        await asyncio.sleep(0.3)
        assert b.engine.adopt_orphans() == 0  # a holds the lease
        await a.engine.wait(run.id)
        await b.engine.wait(run.id)
        return run.id

    run_id = asyncio.run(go())
    assert a.store.run(None, run_id).status == "succeeded"
    assert [text for text, _ in record.calls] == ["once"]


def test_a_cancel_on_another_server_stops_the_run(database: Database, tmp_path: Path) -> None:
    _, a, b = two_servers(database, tmp_path, lease=0.6)  # renews every 0.2 s

    async def go() -> str:
        run_id = await started(a)
        b.engine.cancel(None, run_id)  # b has no task for it: only the database knows
        await asyncio.wait_for(a.engine.wait(run_id), 5)
        return run_id

    run_id = asyncio.run(go())
    run = a.store.run(None, run_id)
    assert run.status == "cancelled"
    assert a.store.steps(run_id).get("nap") is None or a.store.steps(run_id)["nap"].status != (
        "succeeded"
    )


def test_a_stopped_servers_runs_are_taken_over(database: Database, tmp_path: Path) -> None:
    record, a, b = two_servers(database, tmp_path, lease=0.6)

    async def start_and_stop() -> str:
        run_id = await started(a)
        await a.engine.close()  # the server stops; the run stays running, leased to a
        return run_id

    run_id = asyncio.run(start_and_stop())
    a.store.claim(run_id, a.engine.instance, 0.6)  # as if a had died holding it

    async def take_over() -> None:
        assert b.engine.adopt_orphans() == 0  # not expired yet
        await asyncio.sleep(0.8)
        assert b.engine.adopt_orphans() == 1
        await asyncio.wait_for(b.engine.wait(run_id), 10)

    asyncio.run(take_over())
    run = b.store.run(None, run_id)
    assert run.status == "succeeded", run.error
    assert [text for text, _ in record.calls] == ["once"]  # the finished node did not rerun


def test_a_restart_frees_the_leases_of_a_dead_process_of_this_host(
    database: Database, tmp_path: Path
) -> None:
    record = Record()
    a = server(database, record, tmp_path / "a", lease=600)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host, _, tag = a.engine.instance.split(":")
    dead = f"{host}:{gone.stdout.strip()}:{tag}"
    assert _dead_here(dead) and not _dead_here(a.engine.instance)
    assert not _dead_here(f"another-host:{gone.stdout.strip()}:x")

    async def go() -> str:
        a.store.create(None, FLOW, replace=True)
        run = a.start(None, "leased", {})
        await a.engine.close()
        assert a.store.claim(run.id, dead, 600)  # held by a process that is gone
        restarted = server(database, record, tmp_path / "a2", lease=600)
        assert await restarted.resume_unfinished() == 1
        await asyncio.wait_for(restarted.engine.wait(run.id), 10)
        return run.id

    run_id = asyncio.run(go())
    assert a.store.run(None, run_id).status == "succeeded"

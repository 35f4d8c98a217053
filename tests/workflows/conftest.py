"""Fixtures: workflows over a real database (SQLite and PostgreSQL) with counting tools.

The tools are test doubles registered through the real plugin registry; the engine reaches
them through `ToolSet` exactly as it reaches the OS's own tools."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmasos.config import Settings
from llmasos.plugins import PluginRegistry
from llmasos.storage import Database
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.migrate import upgrade_database
from llmasos.tools import Tool, ToolContext, ToolResult, ToolSpec, ToolSystem
from llmasos.tools.interface import ToolError
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.store import RunRecord
from llmasos.workflows.system import Workflows

CIPHER = ContentCipher(secrets.token_bytes(32))
"""The content key of the test servers' workflows (run and step values are sealed)."""


class Record(Tool):
    """Appends its text to a list: a side effect the test can count."""

    spec = ToolSpec(
        name="record",
        description="Record a text.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
        permission="notes",
        side_effect=True,
    )

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.failures_left = 0

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ToolError("not now; try again")
        self.calls.append((arguments.get("text", ""), context.idempotency_key))
        return ToolResult({"recorded": arguments.get("text", "")}, effects=("recorded",))


class Slow(Tool):
    spec = ToolSpec(
        name="slow",
        description="Sleep.",
        parameters={"type": "object", "properties": {"s": {"type": "number"}}},
        permission="notes",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        await asyncio.sleep(float(arguments.get("s", 1)))
        return ToolResult("slept")


async def run(
    workflows: Workflows, source: str, inputs: dict[str, Any] | None = None, user: int | None = None
) -> RunRecord:
    """Store ``source`` as ``user``'s workflow, run it with ``inputs`` and wait for the end."""
    stored, _ = workflows.store.create(user, source, replace=True)
    started = workflows.start(user, stored.name, inputs or {})
    await workflows.engine.wait(started.id)
    return workflows.store.run(user, started.id)


@pytest.fixture
def record() -> Record:
    return Record()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.database and url.drivername.startswith("sqlite"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    db = Database(url)
    upgrade_database(db)
    yield db
    db.close()


@pytest.fixture
def workflows(database: Database, record: Record, tmp_path: Path) -> Workflows:
    registry = PluginRegistry()
    registry.register_tool(record)
    registry.register_tool(Slow())
    settings = Settings(home=tmp_path)
    system = ToolSystem(settings, database, engine=None)  # type: ignore[arg-type]
    return Workflows(database, NodeRuntime(tools=system, registry=registry), CIPHER)

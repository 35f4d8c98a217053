"""The workflows of one server: definitions (the user's and the built-in ones), the engine,
and the cron scheduler.

`Workflows.open` wires a `WorkflowEngine` to the OS's parts (`NodeRuntime`); every run is a
kernel tenant of its owner (the user's name, as for their own requests). The built-in
examples (``support-triage``, ``digest``, ``pipeline``) ship as YAML in
``workflows/examples`` and are every user's unless they define a workflow of the same name.
`Workflows.scheduler` starts each scheduled workflow once per matching minute (claimed in
the database, so two servers on one PostgreSQL start it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.errors import NotFoundError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import User
from llmasos.workflows.definition import Workflow, load_workflow
from llmasos.workflows.engine import WorkflowEngine
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.schedule import due
from llmasos.workflows.store import RunRecord, StoredWorkflow, WorkflowStore

if TYPE_CHECKING:
    from llmasos.config import Settings
    from llmasos.kernel.interface import EngineClientInterface
    from llmasos.knowledge.filesystem import FileSystem
    from llmasos.knowledge.stores import KnowledgeBase
    from llmasos.memory.memories import MemoryStore
    from llmasos.models import ModelStoreInterface

logger = logging.getLogger(__name__)
BUILTIN: Final = ("support-triage", "digest", "pipeline")
SCHEDULER_PERIOD_S: Final = 20.0


def builtin_source(name: str) -> str | None:
    if name not in BUILTIN:
        return None
    return resources.files("llmasos.workflows").joinpath(f"examples/{name}.yaml").read_text()


def principal_for(database: Database, user_id: int | None) -> Principal:
    """Who a run acts as: its owner, with the scopes of the owner's role now."""
    if user_id is None:
        return Principal.local_owner()
    with database.session() as session:
        user = session.scalar(select(User).where(User.id == user_id))
        if user is None:
            raise NotFoundError(f"no user {user_id}")
        return Principal(
            user_id=user.id, name=user.name, role=user.role, scopes=ROLE_SCOPES[user.role]
        )


class Workflows:
    def __init__(
        self, database: Database, runtime: NodeRuntime, cipher: ContentCipher | None = None
    ) -> None:
        self.database = database
        self.store = WorkflowStore(database, cipher)
        runtime.principal_for = runtime.principal_for or (lambda uid: principal_for(database, uid))
        self.runtime = runtime
        self.engine = WorkflowEngine(
            self.store, runtime, tenant_name=self._tenant, lookup=self.workflow
        )
        self._scheduler: asyncio.Task[None] | None = None

    def _tenant(self, user_id: int | None) -> str:
        assert self.runtime.principal_for is not None
        return self.runtime.principal_for(user_id).tenant

    # -- definitions -----------------------------------------------------------------------

    def get(self, user_id: int | None, name: str) -> StoredWorkflow:
        try:
            return self.store.get(user_id, name)
        except NotFoundError:
            source = builtin_source(name)
            if source is None:
                raise
            epoch = datetime(2026, 1, 1, tzinfo=UTC)
            return StoredWorkflow("builtin:" + name, user_id, name, source, None, epoch, epoch)

    def workflow(self, user_id: int | None, name: str) -> Workflow:
        return self.get(user_id, name).workflow()

    def list_workflows(self, user_id: int | None) -> list[tuple[StoredWorkflow, bool]]:
        """The owner's workflows and the built-ins they have not replaced (flagged True)."""
        own = self.store.list_workflows(user_id)
        names = {w.name for w in own}
        found = [(w, False) for w in own]
        found += [(self.get(user_id, n), True) for n in BUILTIN if n not in names]
        return sorted(found, key=lambda pair: pair[0].name)

    # -- running ---------------------------------------------------------------------------

    def start(
        self, user_id: int | None, name: str, inputs: Any, trigger: str = "manual"
    ) -> RunRecord:
        return self.engine.start(user_id, self.workflow(user_id, name), inputs, trigger)

    async def resume_unfinished(self) -> int:
        return await self.engine.resume_unfinished()

    def start_scheduler(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule_loop())

    async def _schedule_loop(self) -> None:
        while True:
            try:
                self.tick(datetime.now(UTC))
            except Exception:  # a broken definition must not stop the other schedules
                logger.exception("workflow scheduler tick failed")
            try:
                self.engine.adopt_orphans()  # the runs of a server that stopped
            except Exception:
                logger.exception("taking over orphaned workflow runs failed")
            await asyncio.sleep(SCHEDULER_PERIOD_S)

    def tick(self, now: datetime) -> list[RunRecord]:
        """Start every workflow due this minute that has not started in it yet."""
        minute = now.replace(second=0, microsecond=0)
        started: list[RunRecord] = []
        for stored, _last in self.store.scheduled():
            if not stored.schedule or not due(stored.schedule, minute):
                continue
            if not self.store.mark_scheduled(stored.id, minute):
                continue
            try:
                workflow = load_workflow(stored.source, name=stored.name)
                started.append(self.engine.start(stored.user_id, workflow, {}, "schedule"))
            except Exception as error:
                logger.warning("scheduled workflow %s did not start: %s", stored.name, error)
        return started

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None
        await self.engine.close()


def open_workflows(
    settings: Settings,
    database: Database,
    engine: EngineClientInterface,
    store: ModelStoreInterface,
    *,
    memory: MemoryStore | None = None,
    knowledge: KnowledgeBase | None = None,
    files: FileSystem | None = None,
) -> Workflows:
    """The workflows of a server over these parts (services from ``settings.home``); the
    values of runs and steps still in clear (written before they were sealed) are sealed
    first."""
    from llmasos.services.runner import runner_for
    from llmasos.tools.interface import ToolSystem

    runtime = NodeRuntime(
        engine=engine,
        services=runner_for(engine, settings.home, store, settings.default_model),
        tools=ToolSystem(settings, database, engine, memory, knowledge, files),
        knowledge=knowledge,
    )
    workflows = Workflows(database, runtime, ContentCipher.from_settings(settings))
    sealed = workflows.store.seal_clear_rows()
    if sealed:
        logger.info("sealed the inputs and outputs of %d workflow runs and steps", sealed)
    return workflows

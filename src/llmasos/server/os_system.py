"""The server's side of the ``os`` tool set (`llmasos.tools.ostools`): installed apps and
the process manager (`llmasos.apps`), and the caller's tasks (`llmasos.agents`), which live
in layers above the tools. `serve` puts one `ServerOperatingSystem` in the `ToolSystem` the
agent runtime uses, so a task (and ``llmasos shell``) can list apps and tasks and, with
approval and the admin scope, install a built-in app and start an app as ``llmasos app
install builtin:NAME`` and ``llmasos app start`` would."""

from __future__ import annotations

import asyncio
from typing import Any

from llmasos.access.principal import Principal
from llmasos.agents.store import TaskStore
from llmasos.apps.catalog import BUILTIN_PREFIX
from llmasos.apps.confinement import AppConfinement
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor
from llmasos.config import Settings
from llmasos.net import local_url
from llmasos.storage import Database


class ServerOperatingSystem:
    """`OperatingSystemInterface` over this server's home, database and task table."""

    def __init__(self, settings: Settings, database: Database, tasks: TaskStore) -> None:
        self.settings = settings
        self.task_store = tasks
        self.supervisor = AppSupervisor(
            AppStore(settings.home),
            database,
            local_url(settings.host, settings.port),
            AppConfinement.from_settings(settings),
        )

    def _app(self, name: str) -> dict[str, Any]:
        installed = self.supervisor.store.get(name)
        running = self.supervisor.status(name)
        return {
            "name": installed.name,
            "version": installed.version,
            "description": installed.manifest.description,
            "permissions": installed.manifest.scopes,
            "running": running is not None,
            "url": running.url if running is not None else None,
        }

    async def apps(self) -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]]:
            return [self._app(app.name) for app in self.supervisor.store.list()]

        return await asyncio.to_thread(listed)

    async def describe_app(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._app, name)

    async def review_app(self, name: str) -> dict[str, Any]:
        manifest = await asyncio.to_thread(self.supervisor.store.review, f"{BUILTIN_PREFIX}{name}")
        return {
            "name": manifest.name,
            "version": manifest.version,
            "description": manifest.description,
            "permissions": manifest.scopes,
        }

    async def install_app(self, name: str) -> dict[str, Any]:
        installed = await asyncio.to_thread(
            self.supervisor.store.install, f"{BUILTIN_PREFIX}{name}"
        )
        return await asyncio.to_thread(self._app, installed.name)

    async def launch_app(self, name: str) -> dict[str, Any]:
        state = await asyncio.to_thread(self.supervisor.start, name)
        return {"name": name, "running": True, "url": state.url, "pid": state.pid}

    async def tasks(self, principal: Principal, limit: int) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(
            self.task_store.list_tasks, principal.user_id, limit=limit
        )
        return [
            {
                "id": r.id,
                "status": r.status.label,
                "steps": r.steps,
                "tokens": r.tokens,
                "instruction": r.spec.instruction[:200],
            }
            for r in records
        ]

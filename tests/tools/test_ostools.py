"""The ``os`` tool set through the real registry and `ToolSet`, over a real home and the
server's `ServerOperatingSystem`: read-only introspection answers, permissions gate each
tool (``app_launch`` is for admins, and a side effect), and without a server the app and
task tools say so instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.agents.store import TaskStore
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.server.os_system import ServerOperatingSystem
from llmasos.storage import ContentCipher, open_database
from llmasos.tools import ToolContext, ToolSystem
from llmasos.tools.registry import ToolSet
from tests.memory.conftest import WordEngine

OS_TOOLS = {
    "os_models", "os_resident_models", "os_services", "os_apps", "os_tasks", "os_status",
    "app_launch",
}  # fmt: skip


def run(context: ToolContext, name: str, arguments: dict[str, Any]) -> Any:
    registry = PluginRegistry()
    register_builtins(registry)

    async def call() -> Any:
        tools = await ToolSet.load(context, allowed=["os"], registry=registry)
        return (await tools.call(name, arguments, context)), tools

    return asyncio.run(call())


def test_os_tools_read_the_machine_and_gate_app_launch(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with open_database(settings) as database:
        tasks = TaskStore(database, ContentCipher(b"k" * 32))
        system = ToolSystem(
            settings, database, WordEngine(), os=ServerOperatingSystem(settings, database, tasks)
        )
        admin = ToolContext(Principal.local_owner(), system)
        result, tools = run(admin, "os_status", {})
        assert set(tools.names()) == OS_TOOLS
        assert tools.get("app_launch").spec.side_effect
        assert result.output["memory"]["total_gib"] > 0 and result.output["disk"]["free_gib"] > 0
        models, _ = run(admin, "os_models", {})
        assert any(m["name"].startswith("smollm2") for m in models.output["models"])
        services, _ = run(admin, "os_services", {})
        assert "summarize" in {s["name"] for s in services.output["services"]}
        assert run(admin, "os_apps", {})[0].output == {"apps": []}
        assert run(admin, "os_tasks", {})[0].output == {"tasks": []}
        resident = run(admin, "os_resident_models", {})[0].output["resident_models"]
        assert [m["name"] for m in resident] == [m.name for m in system.engine.resident_models()]
        launched, _ = run(admin, "app_launch", {"name": "nosuchapp"})
        assert launched.is_error and "nosuchapp" in launched.output["error"]

        user = Principal(user_id=None, name="u", role="user", scopes=ROLE_SCOPES["user"])
        _, theirs = run(ToolContext(user, system), "os_status", {})
        assert "app_launch" not in theirs.names()  # starting apps is the admin's

        bare = ToolSystem(settings, database, WordEngine())  # no server: no apps, no tasks
        missing, _ = run(ToolContext(Principal.local_owner(), bare), "os_apps", {})
        assert missing.is_error and "llmasos serve" in missing.output["error"]

"""The ``os`` tool set through the real registry and `ToolSet`, over a real home and the
server's `ServerOperatingSystem`: read-only introspection answers, permissions gate each
tool (``app_launch`` is for admins, and a side effect), and without a server the app and
task tools say so instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.usage import UsageLog
from llmasos.access.users import UserManager
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
    "os_usage", "model_create", "app_install", "app_launch",
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
        # starting and installing apps is the admin's, making models needs models:write
        assert {"app_launch", "app_install", "model_create"}.isdisjoint(theirs.names())
        assert "os_usage" in theirs.names()

        bare = ToolSystem(settings, database, WordEngine())  # no server: no apps, no tasks
        missing, _ = run(ToolContext(Principal.local_owner(), bare), "os_apps", {})
        assert missing.is_error and "llmasos serve" in missing.output["error"]


def describe(context: ToolContext, name: str, arguments: dict[str, Any]) -> str:
    registry = PluginRegistry()
    register_builtins(registry)

    async def call() -> str:
        tools = await ToolSet.load(context, allowed=["os"], registry=registry)
        return await tools.get(name).describe(arguments, context)

    return asyncio.run(call())


def test_the_os_changes_itself_only_as_the_approval_says(tmp_path: Path) -> None:
    """The issue's "install the summarizer app" and "make a model from smollm2 that always
    answers in French": each approval shows exactly what will happen, and the call does it."""
    settings = Settings(home=tmp_path)
    with open_database(settings) as database:
        tasks = TaskStore(database, ContentCipher(b"k" * 32))
        system = ToolSystem(
            settings, database, WordEngine(), os=ServerOperatingSystem(settings, database, tasks)
        )
        admin = ToolContext(Principal.local_owner(), system)

        shown = describe(admin, "app_install", {"name": "summarizer"})
        assert shown.startswith("install the built-in app summarizer ") and "may use:" in shown
        installed, _ = run(admin, "app_install", {"name": "summarizer"})
        assert not installed.is_error and installed.effects[0].startswith("installed app summ")
        apps = run(admin, "os_apps", {})[0].output["apps"]
        assert [(a["name"], a["running"]) for a in apps] == [("summarizer", False)]
        again, _ = run(admin, "app_install", {"name": "summarizer"})
        assert again.is_error and "already installed" in again.output["error"]
        unknown, _ = run(admin, "app_install", {"name": "nosuchapp"})
        assert unknown.is_error and "summarizer" in unknown.output["error"]  # lists the names

        french = {
            "name": "smollm2-fr",
            "base": "smollm2:135m",
            "system": "Always answer in French.",
            "temperature": 0.3,
        }
        shown = describe(admin, "model_create", french)
        assert "FROM smollm2:135m" in shown and 'SYSTEM """Always answer in French."""' in shown
        assert "PARAMETER temperature 0.3" in shown
        created, _ = run(admin, "model_create", french)
        assert not created.is_error, created.output
        models = {m["name"] for m in run(admin, "os_models", {})[0].output["models"]}
        assert "smollm2-fr:latest" in models
        from llmasos.models import open_model_store

        manifest = open_model_store(settings).resolve("smollm2-fr").manifest
        assert manifest.system == "Always answer in French."
        assert manifest.parameters["temperature"] == 0.3
        missing, _ = run(admin, "model_create", {**french, "base": "nosuchmodel"})
        assert missing.is_error and "nosuchmodel" in missing.output["error"]


def test_os_usage_is_ones_own_unless_admin(tmp_path: Path) -> None:
    """The issue's "how many tokens did alice use this week": an admin may ask about anyone; a
    user sees their own, and another user's name is not found."""
    settings = Settings(home=tmp_path)
    with open_database(settings) as database:
        users = UserManager(database)
        users.create("root")
        alice, bob = users.create("alice", role="user"), users.create("bob", role="user")
        log = UsageLog(database)

        def as_principal(info: Any) -> Principal:
            return Principal(
                user_id=info.id, name=info.name, role="user", scopes=ROLE_SCOPES["user"]
            )

        for principal, tokens in ((as_principal(alice), (100, 20)), (as_principal(bob), (7, 3))):
            log.record(
                principal,
                model="smollm2:135m",
                endpoint="/v1/chat/completions",
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                latency_ms=5,
                status=200,
            )
        system = ToolSystem(settings, database, WordEngine())
        admin = ToolContext(Principal.local_owner(), system)
        week, _ = run(admin, "os_usage", {"user": "alice", "since": "7d"})
        assert week.output["total_tokens"] == 120 and week.output["requests"] == 1
        everyone, _ = run(admin, "os_usage", {"by": "user"})
        assert {r["group"]: r["total_tokens"] for r in everyone.output["rows"]} == {
            "alice": 120,
            "bob": 10,
        }
        as_bob = ToolContext(as_principal(bob), system)
        own, _ = run(as_bob, "os_usage", {})
        assert [r["group"] for r in own.output["rows"]] == ["bob"]
        refused, _ = run(as_bob, "os_usage", {"user": "alice"})
        assert refused.is_error and "alice" in refused.output["error"]
        bad, _ = run(admin, "os_usage", {"since": "last tuesday"})
        assert bad.is_error and "7d" in bad.output["error"]

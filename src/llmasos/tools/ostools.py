"""The ``os`` tool set: LLMasOS looking at itself, for ``llmasos shell`` and any task.

Read-only introspection — the models in the store (``os_models``), the models loaded now
(``os_resident_models``), the named services (``os_services``), the installed apps
(``os_apps``), the caller's tasks (``os_tasks``), memory and disk (``os_status``), tokens
used (``os_usage``: one's own, or anyone's for an admin) — and three actions, each a side
effect that stops for approval showing exactly what will happen: ``model_create`` (a model
made from an installed one with its own system prompt, as ``llmasos create`` makes it from a
Modelfile), ``app_install`` (a built-in app) and ``app_launch`` (an installed app started
through the process manager). Each tool is gated by the scope the same operation needs on
the API (``models:read``, ``chat``, ``tasks``, ``models:write``, ``admin``).

Apps and tasks live in layers above the tools; the server supplies them through
`ToolSystem.os` (`OperatingSystemInterface`). Where no server runs, those tools say so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.tools.interface import (
    OperatingSystemInterface,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    ToolSpec,
)

GROUP = "os"
_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_APP_NAME: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64}},
    "required": ["name"],
    "additionalProperties": False,
}
"""The arguments of the app actions: an app's name."""


def _introspection(name: str, description: str, permission: str) -> ToolSpec:
    """The spec of a read-only ``os`` tool that takes no arguments."""
    return ToolSpec(
        name=name,
        description=description,
        parameters=_NO_ARGUMENTS,
        permission=permission,
        group=GROUP,
    )


def _os_of(context: ToolContext) -> OperatingSystemInterface:
    if context.system.os is None:
        raise ToolError(
            "apps and tasks are only visible inside the server (llmasos serve)",
            code="unavailable",
        )
    return context.system.os


def _gib(count: float) -> float:
    return round(count / 2**30, 2)


def _mib(count: float) -> float:
    return round(count / 2**20, 1)


def memory_status() -> dict[str, Any]:
    """Total and available memory from /proc/meminfo (sysconf where it is missing)."""
    found: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    total = found.get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    available = found.get("MemAvailable") or (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    )
    return {"total_gib": _gib(total), "available_gib": _gib(available)}


class OsModels(Tool):
    spec = _introspection(
        "os_models",
        "List the models installed on this machine (name, format, size).",
        "models:read",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        from llmasos.models import open_model_store

        store = open_model_store(context.system.settings)
        listed = await asyncio.to_thread(store.list)
        models = [
            {
                "name": name,
                "format": str(manifest.format),
                "kind": str(manifest.kind),
                "size_mib": _mib(sum(f.size for f in manifest.files)),
                "parameters": manifest.parameter_count,
                "quantization": manifest.quantization,
            }
            for name, manifest in listed
        ]
        return ToolResult({"models": models})


class OsResidentModels(Tool):
    spec = _introspection(
        "os_resident_models",
        "List the models loaded in memory now, with their size and backend.",
        "models:read",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        loaded = [
            {
                "name": m.name,
                "backend": m.backend,
                "processor": m.processor,
                "size_mib": _mib(m.size_bytes),
                "context_length": m.context_length,
                "running": m.running,
                "waiting": m.waiting,
            }
            for m in context.system.engine.resident_models()
        ]
        return ToolResult({"resident_models": loaded})


class OsServices(Tool):
    spec = _introspection(
        "os_services",
        "List the named services (summarize, translate ...) and what each does.",
        "chat",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        from llmasos.services.registry import ServiceRegistry

        registry = await asyncio.to_thread(ServiceRegistry.load, context.system.settings.home)
        services = [{"name": d.name, "description": d.description} for d in registry.list()]
        return ToolResult({"services": services})


class OsApps(Tool):
    spec = _introspection(
        "os_apps",
        "List the installed apps and whether each is running.",
        "tasks",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult({"apps": await _os_of(context).apps()})


class OsTasks(Tool):
    spec = ToolSpec(
        name="os_tasks",
        description="List your agent tasks, newest first (id, status, steps, instruction).",
        parameters={
            "type": "object",
            "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 50}},
            "additionalProperties": False,
        },
        permission="tasks",
        group=GROUP,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        tasks = await _os_of(context).tasks(context.principal, arguments.get("limit", 10))
        return ToolResult({"tasks": tasks})


class OsStatus(Tool):
    spec = _introspection(
        "os_status",
        "Memory (total, available) and disk (total, free) of this machine, and "
        "how many models are loaded.",
        "models:read",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        home = context.system.settings.home
        disk = await asyncio.to_thread(shutil.disk_usage, home if home.exists() else "/")
        return ToolResult(
            {
                "memory": memory_status(),
                "disk": {"total_gib": _gib(disk.total), "free_gib": _gib(disk.free)},
                "resident_models": len(context.system.engine.resident_models()),
                "cpus": os.cpu_count(),
            }
        )


class AppLaunch(Tool):
    spec = ToolSpec(
        name="app_launch",
        description="Start an installed app (by its name, as os_apps lists it).",
        parameters=_APP_NAME,
        permission="admin",
        side_effect=True,
        group=GROUP,
        timeout_s=60.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        started = await _os_of(context).launch_app(arguments["name"])
        return ToolResult(started, effects=(f"started app {arguments['name']}",))

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        app = await _os_of(context).describe_app(arguments["name"])
        permissions = ", ".join(app.get("permissions") or []) or "none"
        return (
            f"start the app {app['name']} {app.get('version', '')} as its own confined "
            f"process (permissions: {permissions})"
        )


USAGE_GROUPS = ("user", "model", "day")


class OsUsage(Tool):
    spec = ToolSpec(
        name="os_usage",
        description=(
            "Tokens and requests used since a moment, per user, model or day. since: 7d "
            "(default: this week), 24h, 30d or a date such as 2030-01-31. user: a user's name "
            "(admins may ask about anyone; others see their own)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "user": {"type": "string", "minLength": 1, "maxLength": 64},
                "since": {"type": "string", "minLength": 2, "maxLength": 40},
                "by": {"type": "string", "enum": list(USAGE_GROUPS)},
            },
            "additionalProperties": False,
        },
        permission="chat",
        group=GROUP,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        from llmasos.access.usage import UsageLog, parse_since

        since = parse_since(arguments.get("since") or "7d")
        by = arguments.get("by") or "user"
        rows = await asyncio.to_thread(
            UsageLog(context.system.database).report,
            by=by,
            since=since,
            user=arguments.get("user"),
            actor=context.principal,
        )
        return ToolResult(
            {
                "since": since.isoformat(timespec="seconds"),
                "by": by,
                "rows": [row.public() for row in rows],
                "total_tokens": sum(row.total_tokens for row in rows),
                "requests": sum(row.requests for row in rows),
            }
        )


MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"


class ModelCreate(Tool):
    spec = ToolSpec(
        name="model_create",
        description=(
            "Make a new model from an installed one, with its own system prompt (for example "
            "one that always answers in French), as `llmasos create` does from a Modelfile."
        ),
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": MODEL_NAME, "maxLength": 129},
                "base": {"type": "string", "minLength": 1, "maxLength": 129},
                "system": {"type": "string", "minLength": 1, "maxLength": 4000},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            },
            "required": ["name", "base", "system"],
            "additionalProperties": False,
        },
        permission="models:write",
        side_effect=True,
        group=GROUP,
        timeout_s=120.0,
    )

    @staticmethod
    def modelfile(arguments: dict[str, Any]) -> str:
        """The Modelfile this call amounts to (what the approval shows)."""
        system = arguments["system"]
        if '"""' in system:
            raise InvalidRequestError('the system prompt may not contain """', param="system")
        lines = [f"FROM {arguments['base']}", f'SYSTEM """{system}"""']
        if "temperature" in arguments:
            lines.append(f"PARAMETER temperature {arguments['temperature']:g}")
        return "\n".join(lines) + "\n"

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        from llmasos.models import open_model_store

        settings = context.system.settings
        store = open_model_store(settings)
        manifest = await asyncio.to_thread(
            store.create, arguments["name"], self.modelfile(arguments), base_dir=settings.home
        )
        return ToolResult(
            {"name": manifest.name, "base": arguments["base"], "id": manifest.short_id},
            effects=(f"created model {manifest.name} from {arguments['base']}",),
        )

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        return (
            f"create the model {arguments['name']} in the model store from this Modelfile:\n"
            + self.modelfile(arguments)
        )


class AppInstall(Tool):
    spec = ToolSpec(
        name="app_install",
        description=(
            "Install one of the built-in apps (assistant, summarizer, translator, tutor, "
            "writer) by name; os_apps lists what is installed."
        ),
        parameters=_APP_NAME,
        permission="admin",
        side_effect=True,
        group=GROUP,
        timeout_s=120.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        installed = await _os_of(context).install_app(arguments["name"])
        return ToolResult(
            installed, effects=(f"installed app {installed['name']} {installed['version']}",)
        )

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        app = await _os_of(context).review_app(arguments["name"])
        permissions = ", ".join(app.get("permissions") or []) or "none"
        return (
            f"install the built-in app {app['name']} {app['version']} "
            f"({app['description']}); it may use: {permissions}"
        )

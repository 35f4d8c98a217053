"""The tool registry: permission filtering, allow-lists, argument checks, timeouts, providers.

The tools here are test doubles registered through the real plugin registry; what is
under test is the registry's own logic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError
from llmasos.plugins import PluginRegistry
from llmasos.tools import Tool, ToolContext, ToolResult, ToolSpec, ToolSystem
from llmasos.tools.interface import ToolError
from llmasos.tools.registry import ToolSet


class Echo(Tool):
    spec = ToolSpec(
        name="echo",
        description="Echo the text.",
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 10}},
            "required": ["text"],
            "additionalProperties": False,
        },
        permission="notes",
        group="demo",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        if arguments["text"] == "boom":
            raise ToolError("no boom here; try another word")
        return ToolResult({"text": arguments["text"], "key": context.idempotency_key})


class Sleepy(Tool):
    spec = ToolSpec(
        name="sleepy",
        description="Never answers in time.",
        parameters={"type": "object"},
        permission="admin",
        timeout_s=0.05,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        await asyncio.sleep(10)
        return ToolResult("late")


class PerUser:
    async def tools(self, context: ToolContext) -> Sequence[Tool]:
        if context.principal.name == "broken":
            raise ConnectionError("the server died")

        class Mine(Echo):
            spec = ToolSpec(
                name=f"hello_{context.principal.name}",
                description="Per-user tool.",
                parameters={"type": "object"},
                permission="notes",
                group="mcp:mine",
            )

        return [Mine()]


def context(tmp_path: Path, name: str = "alice", role: str = "user") -> ToolContext:
    principal = Principal(user_id=1, name=name, role=role, scopes=ROLE_SCOPES[role])
    system = ToolSystem(
        settings=Settings(home=tmp_path), database=cast(Any, None), engine=cast(Any, None)
    )
    return ToolContext(principal, system, task_id="t1", step=3)


@pytest.fixture
def registry() -> PluginRegistry:
    registry = PluginRegistry()
    registry.register_tool(Echo())
    registry.register_tool("tests.tools.test_registry:Sleepy")
    registry.register_tool("no.such.module:Tool")
    registry.register_tool(PerUser())
    return registry


def test_a_user_gets_the_tools_their_scopes_allow(tmp_path: Path, registry: PluginRegistry) -> None:
    user = asyncio.run(ToolSet.load(context(tmp_path), registry=registry))
    assert user.names() == [
        "echo",
        "hello_alice",
    ]  # sleepy needs admin; the broken import is skipped
    admin = asyncio.run(ToolSet.load(context(tmp_path, "root", "admin"), registry=registry))
    assert admin.names() == ["echo", "sleepy", "hello_root"]
    assert admin.functions()[0]["function"]["name"] == "echo"


def test_allow_lists_take_names_and_groups(tmp_path: Path, registry: PluginRegistry) -> None:
    ctx = context(tmp_path)
    assert asyncio.run(ToolSet.load(ctx, allowed=["demo"], registry=registry)).names() == ["echo"]
    assert asyncio.run(ToolSet.load(ctx, allowed=["mcp:mine"], registry=registry)).names() == [
        "hello_alice"
    ]
    with pytest.raises(InvalidRequestError, match=r"sleepy.*available: demo, echo"):
        asyncio.run(ToolSet.load(ctx, allowed=["sleepy"], registry=registry))


def test_calls_are_checked_and_failures_come_back_as_results(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    ctx = context(tmp_path, "root", "admin")
    tools = asyncio.run(ToolSet.load(ctx, registry=registry))

    def call(name: str, arguments: Any) -> ToolResult:
        return asyncio.run(tools.call(name, arguments, ctx))

    assert call("echo", '{"text": "hi"}').output == {"text": "hi", "key": "t1:3"}
    for name, arguments, code in [
        ("nope", {}, "unknown_tool"),
        ("echo", "{not json", "invalid_arguments"),
        ("echo", "[1]", "invalid_arguments"),
        ("echo", {"text": "far too long for it"}, "invalid_arguments"),
        ("echo", {"text": "hi", "extra": 1}, "invalid_arguments"),
        ("echo", {"text": "boom"}, "tool_error"),
        ("sleepy", {}, "tool_timeout"),
    ]:
        result = call(name, arguments)
        assert result.is_error and result.output["code"] == code, (name, arguments, result)
    assert "another word" in call("echo", {"text": "boom"}).text()


def test_a_failing_provider_contributes_nothing(tmp_path: Path, registry: PluginRegistry) -> None:
    tools = asyncio.run(ToolSet.load(context(tmp_path, "broken"), registry=registry))
    assert tools.names() == ["echo"]


def test_specs_refuse_bad_names_and_schemas() -> None:
    with pytest.raises(InvalidRequestError, match="must match"):
        ToolSpec(name="Bad Name", description="", parameters={"type": "object"}, permission="x")
    with pytest.raises(InvalidRequestError, match="object schema"):
        ToolSpec(name="ok", description="", parameters={"type": "string"}, permission="x")

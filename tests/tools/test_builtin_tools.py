"""The built-in tools: calculator, time, http fetch (off by default, SSRF guard), services,
and their registration through the plugin entry point."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.tools import ToolContext, ToolResult, ToolSystem
from llmasos.tools.calculator import evaluate
from llmasos.tools.interface import ToolError
from llmasos.tools.registry import ToolSet
from llmasos.tools.web import page_text


def context(tmp_path: Path, *, fetch: bool = False, role: str = "user") -> ToolContext:
    settings = Settings(home=tmp_path, tools_http_fetch=fetch)
    system = ToolSystem(settings=settings, database=cast(Any, None), engine=cast(Any, None))
    principal = Principal(user_id=None, name="alice", role=role, scopes=ROLE_SCOPES[role])
    return ToolContext(principal, system, task_id="task_1", step=1)


def builtins() -> PluginRegistry:
    registry = PluginRegistry()
    register_builtins(registry)
    return registry


def call(tmp_path: Path, name: str, arguments: dict[str, Any], **kwargs: Any) -> ToolResult:
    async def run() -> ToolResult:
        ctx = context(tmp_path, **kwargs)
        tools = await ToolSet.load(ctx, registry=builtins())
        return await tools.call(name, arguments, ctx)

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1 + 2 * 3", 7), ("(17 * 4) / 4", 17.0), ("2 ** 10", 1024), ("-3 % 5", 2), ("sqrt(16)", 4.0)],
)
def test_calculator_computes(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "only numbers"),
        ("1 / 0", "division by zero"),
        ("9 ** 999999", "exponents"),
        ("open('x')", "only numbers"),
        ("1 +", "not an arithmetic expression"),
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


def test_time_tools(tmp_path: Path) -> None:
    now = call(tmp_path, "time_now", {"timezone": "Asia/Tokyo"})
    assert not now.is_error and now.output["utc_offset"] == "+0900"
    moved = call(
        tmp_path,
        "time_convert",
        {"time": "2026-03-01T09:30", "from_timezone": "Europe/Paris", "to_timezone": "UTC"},
    )
    assert moved.output["iso"] == "2026-03-01T08:30:00+00:00"
    bad = call(tmp_path, "time_now", {"timezone": "Mars/Olympus"})
    assert bad.is_error and "unknown time zone" in bad.output["error"]
    unreadable = call(tmp_path, "time_convert", {"time": "next tuesday", "to_timezone": "UTC"})
    assert unreadable.is_error and "ISO 8601" in unreadable.output["error"]


def test_http_fetch_is_off_by_default_and_refuses_private_addresses(tmp_path: Path) -> None:
    async def names(fetch: bool) -> list[str]:
        return (await ToolSet.load(context(tmp_path, fetch=fetch), registry=builtins())).names()

    assert "http_fetch" not in asyncio.run(names(False))
    assert "http_fetch" in asyncio.run(names(True))
    for url in (
        "http://127.0.0.1:8000/health",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/",
    ):
        refused = call(tmp_path, "http_fetch", {"url": url}, fetch=True)
        assert refused.is_error and refused.output["code"] == "fetch_failed", url


def test_page_text_drops_markup() -> None:
    html = b"<html><script>evil()</script><p>Hello &amp; <b>bye</b></p></html>"
    assert page_text(html) == "Hello & bye"


def test_service_call_checks_the_services_scope(tmp_path: Path) -> None:
    """A key for one service cannot reach another through the tool."""
    translator = Principal(
        user_id=None, name="app", role="user", scopes=frozenset({"tasks", "services:translate"})
    )

    async def run() -> ToolResult:
        ctx = ToolContext(translator, context(tmp_path).system, task_id="task_1", step=1)
        tools = await ToolSet.load(ctx, allowed=["service_call"], registry=builtins())
        return await tools.call("service_call", {"service": "summarize", "input": {}}, ctx)

    refused = asyncio.run(run())
    assert refused.is_error and "not permitted" in refused.output["error"]


def test_memory_tools_need_the_memory_store(tmp_path: Path) -> None:
    missing = call(tmp_path, "memory_search", {"query": "food"})
    assert missing.is_error and "not available" in missing.output["error"]

"""Our MCP client against a real MCP server written with the SDK (stdio and streamable
HTTP): registration per owner with sealed secrets, tools through the real plugin registry,
schema checks before the call, a server that dies or hangs, and the listing cache."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.plugins import PluginRegistry
from llmasos.storage import Database
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.schema import McpServerRecord
from llmasos.tools import ToolContext, ToolSystem
from llmasos.tools.mcp import client
from llmasos.tools.mcp.client import McpToolProvider, tool_name
from llmasos.tools.mcp.servers import McpServerConfig, McpServerStore
from llmasos.tools.registry import ToolSet
from tests.tools.mcp.conftest import stdio_fields


def principal(user_id: int | None, scopes: frozenset[str] = ROLE_SCOPES["user"]) -> Principal:
    return Principal(user_id=user_id, name=f"u{user_id}", role="user", scopes=scopes)


def context(settings: Settings, database: Database, who: Principal) -> ToolContext:
    system = ToolSystem(settings=settings, database=database, engine=cast(Any, None))
    return ToolContext(who, system)


def registry() -> PluginRegistry:
    plugins = PluginRegistry()
    plugins.register_tool("llmasos.tools.mcp.client:McpToolProvider")
    return plugins


def test_servers_are_per_owner_and_secrets_are_sealed(
    settings: Settings, database: Database
) -> None:
    users = UserManager(database)
    alice, bob = users.create("alice", role="user"), users.create("bob", role="user")
    store = McpServerStore(database, ContentCipher.from_settings(settings))
    config = McpServerConfig.checked(stdio_fields(name="weather", env={"WEATHER_TOKEN": "s3cr3t"}))
    created = store.create(alice.id, config)
    assert created.id.startswith("mcp_") and created.to_dict()["env"] == ["WEATHER_TOKEN"]
    assert "s3cr3t" not in str(created.to_dict())
    with database.session() as session:
        sealed = session.get(McpServerRecord, created.id)
        assert sealed is not None and b"s3cr3t" not in sealed.config
    assert store.get(alice.id, "weather").config.env == {"WEATHER_TOKEN": "s3cr3t"}
    with pytest.raises(NotFoundError):
        store.get(bob.id, created.id)
    with pytest.raises(NotFoundError):
        store.delete(bob.id, "weather")
    with pytest.raises(InvalidRequestError, match="already have"):
        store.create(alice.id, config)
    assert [s.name for s in store.list(bob.id)] == []
    store.delete(alice.id, created.id)
    assert store.list(alice.id) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Bad Name", "command": "x"},
        {"name": "ok"},
        {"name": "ok", "url": "ftp://example.com"},
        {"name": "ok", "command": "x", "env": {"A": 1}},
        {"name": "ok", "url": "http://h/mcp", "command": "x"},
        {"name": "ok", "command": "x", "timeout_s": 0},
    ],
)
def test_bad_configs_are_refused_with_the_field(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        McpServerConfig.checked(fields)
    assert caught.value.param


def test_tool_names_fit_the_pattern() -> None:
    assert tool_name("weather", "get_weather") == "mcp_weather_get_weather"
    odd = tool_name("my-srv", "Get Weather!" * 10)
    assert odd.startswith("mcp_my_srv_get_weather") and len(odd) <= 64
    assert tool_name("a", "X-1") != tool_name("a", "x_1")


def test_stdio_server_tools_join_the_tool_set(settings: Settings, database: Database) -> None:
    users = UserManager(database)
    alice = users.create("alice", role="user")
    store = McpServerStore(database, ContentCipher.from_settings(settings))
    store.create(
        alice.id,
        McpServerConfig.checked(
            stdio_fields(name="weather", env={"WEATHER_TOKEN": "tok"}, timeout_s=20)
        ),
    )
    who = principal(alice.id)

    async def go() -> None:
        ctx = context(settings, database, who)
        tools = await ToolSet.load(ctx, allowed=["mcp:weather"], registry=registry())
        weather = tools.get("mcp_weather_get_weather")
        assert weather.spec.group == "mcp:weather" and weather.spec.permission == "mcp"
        assert weather.spec.side_effect is False  # readOnlyHint
        assert tools.get("mcp_weather_add_note").spec.side_effect is True
        result = await tools.call("mcp_weather_get_weather", '{"city": "Paris"}', ctx)
        assert not result.is_error and "Paris" in result.text()
        noted = await tools.call("mcp_weather_add_note", {"text": "hi"}, ctx)
        assert "token tok" in noted.text()  # the sealed env reached the process
        # arguments that fail the server's schema never reach it
        bad = await tools.call("mcp_weather_get_weather", {"town": "Paris"}, ctx)
        assert bad.is_error and bad.output["code"] == "invalid_arguments"
        failed = await tools.call("mcp_weather_fail", {}, ctx)
        assert failed.is_error and "weather" in failed.output["error"]

    asyncio.run(go())


def test_a_key_without_the_mcp_scope_sees_no_server_tools(
    settings: Settings, database: Database
) -> None:
    alice = UserManager(database).create("alice", role="user")
    store = McpServerStore(database, ContentCipher.from_settings(settings))
    store.create(alice.id, McpServerConfig.checked(stdio_fields(name="weather")))
    narrow = principal(alice.id, frozenset({"chat"}))
    found = asyncio.run(McpToolProvider().tools(context(settings, database, narrow)))
    assert found == []


def test_a_server_that_dies_or_hangs_is_a_tool_error(tmp_path: Any) -> None:
    config = McpServerConfig.checked(stdio_fields(name="weather", timeout_s=8))

    async def go() -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(client.McpConnectionError, match="weather failed during crash"):
            await client.call_tool(config, "crash", {})
        with pytest.raises(client.ToolError, match="did not answer hang within 8 s"):
            await client.call_tool(config, "hang", {})
        assert asyncio.get_running_loop().time() - started < 60  # never a hang

    asyncio.run(go())


def test_a_confined_server_reads_only_what_it_was_given(tmp_path: Path) -> None:
    secret = tmp_path / "home" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the owner's secret")
    confined = McpServerConfig.checked(stdio_fields(name="weather", timeout_s=20))
    given = McpServerConfig.checked(
        stdio_fields(name="given", timeout_s=20, read_paths=[str(secret.parent)])
    )
    loose = McpServerConfig.checked(stdio_fields(name="loose", timeout_s=20, confine=False))

    async def read(config: McpServerConfig) -> str:
        return (await client.call_tool(config, "read_file", {"path": str(secret)})).text()

    assert asyncio.run(read(confined)).startswith("cannot read")
    assert asyncio.run(read(given)) == "the owner's secret"
    assert asyncio.run(read(loose)) == "the owner's secret"


def test_a_server_that_cannot_start_says_why() -> None:
    missing = McpServerConfig.checked({"name": "missing", "command": "/nonexistent/mcp-server"})
    broken = McpServerConfig.checked(
        {
            "name": "broken",
            "command": sys.executable,
            "args": ["-c", "import sys; sys.stderr.write('boom-marker\\n'); sys.exit(2)"],
            "confine": False,
        }
    )

    async def go() -> None:
        with pytest.raises(client.McpConnectionError, match="missing failed during tools/list"):
            await client.list_tools(missing)
        with pytest.raises(client.McpConnectionError, match="boom-marker"):
            await client.list_tools(broken)

    asyncio.run(go())


def test_streamable_http_server_and_the_listing_cache(weather_url: str) -> None:
    config = McpServerConfig.checked(
        {"name": "remote", "url": weather_url, "headers": {"X-Token": "t"}, "timeout_s": 10}
    )

    async def go() -> None:
        first = await client.list_tools(config)
        assert {t.name for t in first} >= {"get_weather", "add_note", "crash", "hang"}
        assert await client.list_tools(config) is first  # cached
        assert await client.list_tools(config, fresh=True) is not first
        result = await client.call_tool(config, "get_weather", {"city": "Oslo"})
        assert "Oslo" in result.text()
        dead = McpServerConfig.checked({"name": "dead", "url": "http://127.0.0.1:9/mcp"})
        with pytest.raises(client.McpConnectionError, match="dead failed during tools/list"):
            await client.list_tools(dead)

    asyncio.run(go())

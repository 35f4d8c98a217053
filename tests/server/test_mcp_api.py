"""MCP over the real server: /v1/mcp/servers per user, and the SDK's own ClientSession
against /mcp (behind API keys) and against `llmasos mcp serve` (stdio)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.server.conftest import ServerThread
from tests.tools.mcp.conftest import stdio_fields

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


@dataclass
class McpServerUnderTest:
    url: str
    home: Path
    alice: str
    bob: str
    narrow: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServerUnderTest]:
    home: Path = tmp_path_factory.mktemp("mcp-home")
    settings = load_settings(home=home, auth=True, threads=2, context_length=1024)
    database = open_database(settings)
    users = UserManager(database)
    users.create("alice", role="user")
    users.create("bob", role="user")
    keys = KeyManager(database)
    alice = keys.create("alice", "laptop").secret
    bob = keys.create("bob", "laptop").secret
    narrow = keys.create("alice", "ide", scopes=["mcp"]).secret
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store, keys=keys)
    try:
        with ServerThread(app) as url:
            yield McpServerUnderTest(url, home, alice, bob, narrow)
    finally:
        asyncio.run(engine.close())
        database.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_registered_servers_are_per_user(served: McpServerUnderTest) -> None:
    url = f"{served.url}/v1/mcp/servers"
    body = stdio_fields(name="weather", env={"WEATHER_TOKEN": "secret-value"})
    created = httpx.post(url, json=body, headers=bearer(served.alice))
    assert created.status_code == 200, created.text
    server = created.json()
    assert server["env"] == ["WEATHER_TOKEN"] and "secret-value" not in created.text
    assert server["tool_group"] == "mcp:weather"
    listed = httpx.get(url, headers=bearer(served.alice)).json()["data"]
    assert [s["id"] for s in listed] == [server["id"]]
    assert httpx.get(url, headers=bearer(served.bob)).json()["data"] == []
    other = httpx.get(f"{url}/{server['id']}", headers=bearer(served.bob))
    assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"
    assert httpx.delete(f"{url}/{server['id']}", headers=bearer(served.bob)).status_code == 404
    tools = httpx.get(f"{url}/weather/tools", headers=bearer(served.alice), timeout=60)
    assert tools.status_code == 200, tools.text
    names = {t["name"]: t for t in tools.json()["data"]}
    assert names["mcp_weather_get_weather"]["side_effect"] is False
    bad = httpx.post(url, json={"name": "x y", "command": "c"}, headers=bearer(served.alice))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    gone = httpx.delete(f"{url}/weather", headers=bearer(served.alice))
    assert gone.json() == {"id": server["id"], "object": "mcp_server.deleted", "deleted": True}


async def _session_run(url: str, key: str | None, work: Any) -> Any:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = bearer(key) if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def test_mcp_endpoint_serves_what_the_key_allows(served: McpServerUnderTest) -> None:
    async def names(session: Any) -> set[str]:
        return {tool.name for tool in (await session.list_tools()).tools}

    full = asyncio.run(_session_run(served.url, served.alice, names))
    assert "chat" in full and "service_summarize" in full
    narrow = asyncio.run(_session_run(served.url, served.narrow, names))
    assert "chat" not in narrow and not any(n.startswith("service_") for n in narrow)
    with pytest.raises(BaseException):  # noqa: B017 - the SDK wraps the 401 in a group
        asyncio.run(_session_run(served.url, None, names))
    assert httpx.post(f"{served.url}/mcp", json={}).status_code == 401

    async def chat(session: Any) -> Any:
        return await session.call_tool("chat", {"prompt": "Say hello.", "max_tokens": 8})

    result = asyncio.run(_session_run(served.url, served.alice, chat))
    assert not result.is_error and result.structured_content["answer"] is not None

    async def bad(session: Any) -> Any:
        return await session.call_tool("chat", {"prompt": 12})

    refused = asyncio.run(_session_run(served.url, served.alice, bad))
    assert refused.is_error and "prompt" in refused.content[0].text


def test_llmasos_mcp_serve_over_stdio(tmp_path: Path) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "llmasos", "mcp", "serve"],
        env={**os.environ, "LLMASOS_HOME": str(tmp_path), "LLMASOS_THREADS": "2"},
    )

    async def go() -> None:
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert "chat" in tools and "service_classify" in tools
            assert tools["chat"].annotations.read_only_hint is True
            unknown = await session.call_tool("no_such_tool", {})
            assert unknown.is_error and "unknown tool" in unknown.content[0].text
            answer = await session.call_tool("chat", {"prompt": "Hi", "max_tokens": 4})
            assert not answer.is_error and answer.structured_content["model"]

    asyncio.run(asyncio.wait_for(go(), 300))

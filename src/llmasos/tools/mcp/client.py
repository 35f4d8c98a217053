"""LLMasOS as an MCP client: a user's MCP servers' tools as LLMasOS tools.

`open_session` connects to one server with the SDK's own transports (``stdio_client`` for a
command, ``streamable_http_client`` for a URL) and its ``ClientSession``. Every operation
opens its own connection and closes it: a stdio server is a process per call, so a server
that crashed or hung is gone with that call and cannot poison the next one. Each operation
runs under the server's ``timeout_s``; a server that dies mid-call, hangs, refuses the
handshake or cannot be started becomes a `ToolError` naming the server and the reason.

`list_tools` caches a server's tool list for `LIST_TTL_S` seconds (a failure for
`FAILURE_TTL_S`, so a dead server does not cost a timeout on every task step).
`McpToolProvider` is the `ToolProvider` registered through ``llmasos.plugins``: for a
principal holding the ``mcp`` scope it lists their servers and returns one `McpTool` per
remote tool, named ``mcp_SERVER_TOOL`` (sanitized to the tool-name pattern), in the group
``mcp:SERVER``, with the server's input schema — so `ToolSet.call` refuses arguments that
fail it before the server sees them — and ``side_effect`` true unless the server marks the
tool ``readOnlyHint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from llmasos.sandbox import ConfinementMode
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec
from llmasos.tools.mcp.servers import McpServer, McpServerConfig, McpServerStore

if TYPE_CHECKING:
    from mcp import ClientSession

    from llmasos.config import Settings

logger = logging.getLogger(__name__)

LIST_TTL_S: Final = 30.0
FAILURE_TTL_S: Final = 10.0
MAX_RESULT_CHARS: Final = 100_000
PERMISSION: Final = "mcp"


@dataclass(frozen=True)
class RemoteTool:
    """One tool as the server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool


class McpConnectionError(ToolError):
    """The server could not be reached, died, or broke the protocol."""

    status_code = 502
    error_type = "api_error"
    default_code = "mcp_server_error"


def _reason(error: BaseException) -> str:
    """One readable line for what went wrong, unwrapping task-group exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]


@contextlib.asynccontextmanager
async def open_session(
    config: McpServerConfig,
    errlog: TextIO | None = None,
    mode: ConfinementMode = ConfinementMode.STRICT,
    hidden: tuple[Path, ...] = (),
) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` to the server; closed (process ended) on exit.
    A stdio server's standard error goes to ``errlog`` (default: discarded); a confined one
    runs in the sandbox under ``mode`` (strict: refused where a layer is missing), and sees
    nothing of ``hidden`` (the LLMasOS home: `hidden_paths`)."""
    from mcp import ClientSession

    async with contextlib.AsyncExitStack() as stack:
        if config.transport == "stdio":
            from mcp.client.stdio import (
                StdioServerParameters,
                get_default_environment,
                stdio_client,
            )

            assert config.command is not None
            env = {**get_default_environment(), **config.env}
            if errlog is None:
                errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115
            if config.confine:
                from llmasos.tools.mcp.confined import confined_stdio

                read, write = await stack.enter_async_context(
                    confined_stdio(config, env, errlog, mode, hidden)
                )
            else:
                params = StdioServerParameters(
                    command=config.command, args=list(config.args), env=env, cwd=config.cwd
                )
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            assert config.url is not None
            client = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=config.headers,
                    timeout=httpx2.Timeout(config.timeout_s, read=config.timeout_s),
                )
            )
            read, write = await stack.enter_async_context(
                streamable_http_client(config.url, http_client=client)
            )
        session = await stack.enter_async_context(
            ClientSession(read, write, read_timeout_seconds=config.timeout_s)
        )
        await session.initialize()
        yield session


async def _guarded(
    config: McpServerConfig,
    what: str,
    work: Any,
    mode: ConfinementMode,
    hidden: tuple[Path, ...] = (),
) -> Any:
    """Run ``work(session)`` on a fresh connection under the server's timeout; every failure
    becomes a `ToolError` naming the server."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        try:
            async with asyncio.timeout(config.timeout_s):
                async with open_session(config, errlog, mode, hidden) as session:
                    return await work(session)
        except BaseException as error:
            explained = _explain(error, config, what, errlog)
            if explained is None or explained is error:
                raise
            raise explained from None


def _explain(
    error: BaseException, config: McpServerConfig, what: str, errlog: TextIO
) -> ToolError | None:
    """The `ToolError` that says what went wrong, with the end of a stdio server's standard
    error; None for what is not the server's failure (cancellation, exit)."""
    if isinstance(error, ToolError):
        return error
    if isinstance(error, TimeoutError):
        return ToolError(
            f"MCP server {config.name} did not answer {what} within {config.timeout_s:g} s",
            code="tool_timeout",
        )
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return None
    # anything else is the server's or the connection's: the SDK raises exception groups,
    # OSError (no such command), McpError (connection closed) ...
    errlog.seek(0)
    tail = " | ".join(errlog.read()[-2000:].strip().splitlines()[-2:])
    said = f" (its stderr: {tail[:300]})" if tail else ""
    return McpConnectionError(
        f"MCP server {config.name} failed during {what}: {_reason(error)}{said}"
    )


_cache: dict[str, tuple[float, list[RemoteTool] | ToolError]] = {}


async def list_tools(
    config: McpServerConfig,
    *,
    fresh: bool = False,
    mode: ConfinementMode = ConfinementMode.STRICT,
    hidden: tuple[Path, ...] = (),
) -> list[RemoteTool]:
    """The server's tools, from the cache when listed less than `LIST_TTL_S` ago."""
    key = config.fingerprint()
    cached = _cache.get(key)
    if cached is not None and not fresh and cached[0] > time.monotonic():
        if isinstance(cached[1], ToolError):
            raise cached[1]
        return cached[1]

    async def work(session: ClientSession) -> list[RemoteTool]:
        found: list[RemoteTool] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the listing
            from mcp.types import PaginatedRequestParams

            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            for tool in page.tools:
                annotations = tool.annotations
                found.append(
                    RemoteTool(
                        name=tool.name,
                        description=(tool.description or "")[:2000],
                        input_schema=dict(tool.input_schema or {}),
                        read_only=bool(annotations and annotations.read_only_hint),
                    )
                )
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    try:
        tools: list[RemoteTool] = await _guarded(config, "tools/list", work, mode, hidden)
    except ToolError as error:
        _cache[key] = (time.monotonic() + FAILURE_TTL_S, error)
        raise
    _cache[key] = (time.monotonic() + LIST_TTL_S, tools)
    return tools


def forget(config: McpServerConfig) -> None:
    """Drop the cached tool list of a server (after it was removed or changed)."""
    _cache.pop(config.fingerprint(), None)


async def call_tool(
    config: McpServerConfig,
    name: str,
    arguments: dict[str, Any],
    mode: ConfinementMode = ConfinementMode.STRICT,
    hidden: tuple[Path, ...] = (),
) -> ToolResult:
    """Call one tool; the server's own error result becomes a `ToolError` with its text."""

    async def work(session: ClientSession) -> Any:
        return await session.call_tool(name, arguments)

    result = await _guarded(config, name, work, mode, hidden)
    texts = [getattr(block, "text", None) for block in result.content]
    text = "\n".join(t for t in texts if isinstance(t, str))
    others = [block.type for block in result.content if getattr(block, "text", None) is None]
    if result.is_error:
        raise ToolError(f"{config.name}.{name}: {text[:2000] or 'the tool failed'}")
    output: Any
    structured = result.structured_content
    if isinstance(structured, dict) and list(structured) == ["result"]:
        output = structured["result"]  # how MCPServer wraps a function's plain return value
    elif structured is not None:
        output = structured
    else:
        output = text[:MAX_RESULT_CHARS]
        if others:
            output += f"\n[{len(others)} non-text part(s) left out: {', '.join(others)}]"
    return ToolResult(output, effects=(f"called {name} on MCP server {config.name}",))


def tool_name(server: str, remote: str) -> str:
    """``mcp_SERVER_TOOL`` in the tool-name pattern; a hash keeps long or mangled names
    distinct."""
    raw = f"mcp_{server}_{remote}".lower()
    name = re.sub(r"[^a-z0-9_]+", "_", raw).strip("_")
    if name != raw or len(name) > 64:
        digest = hashlib.sha256(remote.encode()).hexdigest()[:6]
        name = f"{name[:57]}_{digest}"
    return name


def object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The server's input schema as an object schema (some servers leave ``type`` out)."""
    result = dict(schema)
    result.setdefault("type", "object")
    if result.get("type") != "object":
        return {"type": "object", "properties": {}}
    return result


class McpTool(Tool):
    """One remote tool of one of the caller's MCP servers."""

    def __init__(
        self,
        server: McpServer,
        remote: RemoteTool,
        mode: ConfinementMode = ConfinementMode.STRICT,
        hidden: tuple[Path, ...] = (),
    ) -> None:
        self.server = server
        self.remote = remote
        self.mode = mode
        self.hidden = hidden
        description = remote.description or f"{remote.name} (MCP server {server.name})"
        self.spec = ToolSpec(
            name=tool_name(server.name, remote.name),
            description=f"[MCP {server.name}] {description}",
            parameters=object_schema(remote.input_schema),
            permission=PERMISSION,
            side_effect=not remote.read_only,
            group=f"mcp:{server.name}",
            timeout_s=server.config.timeout_s + 5.0,  # room to end the process first
        )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        return await call_tool(
            self.server.config, self.remote.name, arguments, self.mode, self.hidden
        )

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        import json

        shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        where = self.server.config.url or self.server.config.command
        return f"call {self.remote.name} {shown} on MCP server {self.server.name} ({where})"


def confinement_mode(settings: Settings) -> ConfinementMode:
    """How strictly stdio servers are confined: the machine's setting for what LLMasOS
    starts on someone's behalf (``app_confinement``)."""
    return ConfinementMode(settings.app_confinement)


def hidden_paths(settings: Settings) -> tuple[Path, ...]:
    """What no stdio server may see, whatever paths it was given: the LLMasOS home (its key
    file, the database, apps' data, other users' files)."""
    return (Path(settings.home),)


def server_store(context: ToolContext) -> McpServerStore:
    from llmasos.storage.crypto import ContentCipher

    return McpServerStore(
        context.system.database, ContentCipher.from_settings(context.system.settings)
    )


class McpToolProvider:
    """The tools of the caller's registered MCP servers (none without the ``mcp`` scope).

    A server that cannot be listed contributes no tools and is logged; the others still do."""

    async def tools(self, context: ToolContext) -> Sequence[Tool]:
        if not context.principal.allows_scope(PERMISSION):
            return []
        servers = server_store(context).list(context.principal.user_id)
        mode = confinement_mode(context.system.settings)
        hidden = hidden_paths(context.system.settings)
        listed = await asyncio.gather(
            *(list_tools(s.config, mode=mode, hidden=hidden) for s in servers),
            return_exceptions=True,
        )
        tools: list[Tool] = []
        for server, found in zip(servers, listed, strict=True):
            if isinstance(found, BaseException):
                logger.warning("MCP server %s left out: %s", server.name, _reason(found))
                continue
            tools.extend(McpTool(server, remote, mode, hidden) for remote in found)
        return tools

    def __repr__(self) -> str:
        return "McpToolProvider()"

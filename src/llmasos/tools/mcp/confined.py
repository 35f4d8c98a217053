"""A stdio MCP server run inside LLMasOS's sandbox, as an MCP transport.

`confined_stdio` starts the server's command with `llmasos.sandbox.spawn` — namespaces, an
empty read-only root with the system, Python and the paths the user listed, the LLMasOS home
hidden (its key file, the database, other users' data), seccomp, cgroup limits — and yields
the pair of message streams the SDK's ``ClientSession`` takes, exchanging newline-delimited
JSON-RPC over the process's pipes as the SDK's own ``stdio_client`` does. The sandbox's pipes
are ordinary blocking files, so one worker thread reads and one writes; on exit the
process's stdin is closed, it gets a grace period, then the whole sandbox is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import anyio.to_thread

from llmasos.sandbox import ConfinementMode, SandboxedProcess, SandboxSpec, spawn
from llmasos.tools.mcp.servers import McpServerConfig

GRACE_S: Final = 2.0


def sandbox_spec(config: McpServerConfig, hidden: tuple[Path, ...] = ()) -> SandboxSpec:
    """What the server may reach: its listed paths (and working directory), the network
    when allowed, nothing of ``hidden`` (the LLMasOS home) even where a listed path holds
    it."""
    readable = [Path(p) for p in (*config.read_paths, config.cwd or "") if p]
    command = shutil.which(config.command or "")
    if command:
        readable.append(Path(os.path.realpath(command)).parent)
    return SandboxSpec(
        name=f"mcp.{config.name}",
        network=config.network,
        readable=tuple(p for p in readable if p.exists()),
        writable=tuple(Path(p) for p in config.write_paths if Path(p).exists()),
        hidden=hidden,
    )


@contextlib.asynccontextmanager
async def confined_stdio(
    config: McpServerConfig,
    env: dict[str, str],
    errlog: TextIO,
    mode: ConfinementMode,
    hidden: tuple[Path, ...] = (),
) -> AsyncIterator[tuple[Any, Any]]:
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter

    assert config.command is not None
    process = await anyio.to_thread.run_sync(
        lambda: spawn(
            [config.command or "", *config.args],
            sandbox_spec(config, hidden),
            mode=mode,
            cwd=config.cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
        )
    )
    incoming_writer, incoming = anyio.create_memory_object_stream[Any](0)
    outgoing, outgoing_reader = anyio.create_memory_object_stream[Any](0)
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None

    async def read() -> None:
        async with incoming_writer:
            while True:
                line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
                if not line:
                    return  # the server exited: the session sees the connection close
                try:
                    message: Any = SessionMessage(
                        jsonrpc_message_adapter.validate_json(line, by_name=False)
                    )
                except ValueError as error:
                    message = error
                try:
                    await incoming_writer.send(message)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return

    async def write() -> None:
        async with outgoing_reader:
            async for item in outgoing_reader:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"

                def send(data: bytes = data.encode()) -> None:
                    stdin.write(data)
                    stdin.flush()

                try:
                    await anyio.to_thread.run_sync(send)
                except OSError:
                    await incoming_writer.aclose()
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        group.start_soon(write)
        try:
            yield incoming, outgoing
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_stop, process)
            group.cancel_scope.cancel()


def _stop(process: SandboxedProcess) -> None:
    """Close stdin, wait a moment, then end the whole sandbox."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(OSError):
        if process.stdout is not None:
            process.stdout.close()

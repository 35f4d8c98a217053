"""``llmasos mcp add|ls|rm|tools|serve``: your MCP servers, and LLMasOS as an MCP server.

``add``, ``ls``, ``rm`` and ``tools`` talk to a running server when one answers (as the
machine's owner, like the other local commands), else to the database in this process.
``serve`` speaks MCP on standard input and output with an in-process kernel, as the
machine's owner: point an MCP client (an IDE, a desktop assistant) at ``llmasos mcp serve``.
Nothing but the protocol is written to standard output.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import call_server, server_url
from llmasos.cli.root import app, err_console, state
from llmasos.errors import InvalidRequestError

mcp_app = typer.Typer(
    help="MCP: register MCP servers whose tools LLMasOS may use; serve LLMasOS over MCP.",
    no_args_is_help=True,
)
app.add_typer(mcp_app, name="mcp")


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"{option} takes NAME=VALUE, not {item!r}")
        result[key.strip()] = value
    return result


def _local_store() -> Any:
    from llmasos.storage import open_database
    from llmasos.storage.crypto import ContentCipher
    from llmasos.tools.mcp.servers import McpServerStore

    settings = state.settings
    return McpServerStore(open_database(settings), ContentCipher.from_settings(settings))


def _api(method: str, path: str, **kwargs: Any) -> Any | None:
    if server_url(state.settings) is None:
        return None
    return call_server(state.settings, method, path, **kwargs)


@mcp_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A short name; the tools' group is mcp:NAME.")],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The stdio server's command and arguments (after --)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="A streamable HTTP server's URL.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE for the command.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="NAME=VALUE sent to the URL.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds one call may take.")] = 30.0,
    confine: Annotated[
        bool, typer.Option(help="Run a command in LLMasOS's sandbox (no view of its home).")
    ] = True,
    network: Annotated[bool, typer.Option(help="A confined command has the network.")] = True,
    read: Annotated[
        list[str] | None, typer.Option("--read", help="A path a confined command may read.")
    ] = None,
    write: Annotated[
        list[str] | None, typer.Option("--write", help="A path a confined command may write.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Register an MCP server: `llmasos mcp add NAME -- COMMAND ARGS...` or `--url URL`.

    Environment values and headers are stored encrypted and never shown again."""
    from llmasos.tools.mcp.servers import McpServerConfig

    fields: dict[str, Any] = {
        "name": name,
        "url": url,
        "env": _pairs(env, "--env"),
        "headers": _pairs(header, "--header"),
        "timeout_s": timeout,
    }
    if command:
        program = command[0]
        if "/" in program and Path(program).exists():  # the server may run elsewhere
            program = str(Path(program).absolute())
        fields["command"], fields["args"] = program, list(command[1:])
        fields.update(
            confine=confine,
            network=network,
            read_paths=[str(Path(p).resolve()) for p in read or []],
            write_paths=[str(Path(p).resolve()) for p in write or []],
        )
    config = McpServerConfig.checked(fields)
    body = {k: v for k, v in fields.items() if v not in (None, {}, [])}
    created = _api("POST", "/v1/mcp/servers", json=body)
    if created is None:
        created = _local_store().create(None, config).to_dict()
    if json_output:
        print_json(created)
    else:
        err_console.print(f"added {created['name']} ({created['id']}); tools in mcp:{name}")


@mcp_app.command("ls")
def list_servers(
    json_output: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List your MCP servers (fields: id, name, transport, command, args, env, url,
    headers, timeout_s, tool_group, created_at; env and headers by name only)."""
    answer = _api("GET", "/v1/mcp/servers")
    servers = answer["data"] if answer else [s.to_dict() for s in _local_store().list(None)]
    if json_output:
        print_json(servers)
        return
    if not servers:
        err_console.print("no MCP servers; add one with `llmasos mcp add NAME -- COMMAND`")
        return
    rows = table(Column("name", key=True), Column("id", key=True), "transport", "reaches")
    for server in servers:
        reach = server["url"] or " ".join([server["command"] or "", *server["args"]])
        rows.add_row(server["name"], server["id"], server["transport"], reach)
    print_table(rows)


@mcp_app.command("rm")
def remove(name: Annotated[str, typer.Argument(help="The server's name or id.")]) -> None:
    """Remove an MCP server (its tools leave every tool set)."""
    answer = _api("DELETE", f"/v1/mcp/servers/{name}")
    if answer is None:
        _local_store().delete(None, name)
    err_console.print(f"removed {name}")


@mcp_app.command("tools")
def tools(
    name: Annotated[str, typer.Argument(help="The server's name or id.")],
    json_output: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List an MCP server's tools as LLMasOS names them (fields: name, remote_name,
    description, side_effect, parameters)."""
    answer = _api("GET", f"/v1/mcp/servers/{name}/tools")
    if answer is None:
        from llmasos.tools.mcp import client

        server = _local_store().get(None, name)
        mode = client.confinement_mode(state.settings)
        hidden = client.hidden_paths(state.settings)
        found = asyncio.run(client.list_tools(server.config, fresh=True, mode=mode, hidden=hidden))
        data = [
            {
                "name": tool.spec.name,
                "remote_name": tool.remote.name,
                "description": tool.remote.description,
                "side_effect": tool.spec.side_effect,
                "parameters": tool.spec.parameters,
            }
            for tool in (client.McpTool(server, remote, mode) for remote in found)
        ]
    else:
        data = answer["data"]
    if json_output:
        print_json(data)
        return
    rows = table(Column("name", key=True), "side effect", "description")
    for tool in data:
        side_effect = "yes" if tool["side_effect"] else "no"
        rows.add_row(str(tool["name"]), side_effect, str(tool["description"]))
    print_table(rows)


@mcp_app.command("serve")
def serve() -> None:
    """Serve LLMasOS's tools, named services and chat over MCP on stdin/stdout, as the
    machine's owner, with an in-process kernel."""
    from llmasos.access.principal import Principal
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.services.runner import runner_for
    from llmasos.storage import open_database
    from llmasos.tools.interface import ToolSystem
    from llmasos.tools.mcp.server import McpExposure, serve_stdio

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    settings, store = state.settings, state.store

    async def go() -> None:
        engine = InProcessEngineClient(settings, store)
        try:
            with open_database(settings) as database:
                system = ToolSystem(settings=settings, database=database, engine=engine)
                runner = runner_for(engine, settings.home, store, settings.default_model)
                await serve_stdio(McpExposure(system, runner), Principal.local_owner())
        finally:
            await engine.close()

    asyncio.run(go())

"""``/v1/mcp/servers``: register, list, show and remove the caller's MCP servers, and list
one server's tools as LLMasOS names them. Another user's server is 404."""

from __future__ import annotations

from fastapi import APIRouter

from llmasos.server.mcp.protocol import (
    McpServerCreate,
    McpServerDeleted,
    McpServerList,
    McpServerOut,
    McpToolList,
    McpToolOut,
)
from llmasos.server.mcp.serving import McpService, current_user_id
from llmasos.tools.mcp import client
from llmasos.tools.mcp.servers import McpServerConfig


def mcp_router(service: McpService) -> APIRouter:
    router = APIRouter(tags=["mcp"])

    @router.post("/v1/mcp/servers", response_model=McpServerOut, summary="Register an MCP server")
    async def create_server(body: McpServerCreate) -> McpServerOut:
        config = McpServerConfig.checked(body.model_dump())
        user = current_user_id()
        server = await service.run(lambda store: store.create(user, config))
        return McpServerOut(**server.to_dict())

    @router.get("/v1/mcp/servers", response_model=McpServerList, summary="List MCP servers")
    async def list_servers() -> McpServerList:
        user = current_user_id()
        servers = await service.run(lambda store: store.list(user))
        return McpServerList(data=[McpServerOut(**s.to_dict()) for s in servers])

    @router.get(
        "/v1/mcp/servers/{server_id}", response_model=McpServerOut, summary="Show an MCP server"
    )
    async def get_server(server_id: str) -> McpServerOut:
        user = current_user_id()
        server = await service.run(lambda store: store.get(user, server_id))
        return McpServerOut(**server.to_dict())

    @router.delete(
        "/v1/mcp/servers/{server_id}",
        response_model=McpServerDeleted,
        summary="Remove an MCP server",
    )
    async def delete_server(server_id: str) -> McpServerDeleted:
        user = current_user_id()
        server = await service.run(lambda store: store.delete(user, server_id))
        client.forget(server.config)
        return McpServerDeleted(id=server.id)

    @router.get(
        "/v1/mcp/servers/{server_id}/tools",
        response_model=McpToolList,
        summary="List an MCP server's tools",
    )
    async def server_tools(server_id: str) -> McpToolList:
        user = current_user_id()
        server = await service.run(lambda store: store.get(user, server_id))
        mode = client.confinement_mode(service.settings)
        hidden = client.hidden_paths(service.settings)
        remote = await client.list_tools(server.config, fresh=True, mode=mode, hidden=hidden)
        tools = [client.McpTool(server, tool, mode, hidden) for tool in remote]
        return McpToolList(
            server=server.name,
            data=[
                McpToolOut(
                    name=tool.spec.name,
                    remote_name=tool.remote.name,
                    description=tool.remote.description,
                    side_effect=tool.spec.side_effect,
                    parameters=tool.spec.parameters,
                )
                for tool in tools
            ],
        )

    return router

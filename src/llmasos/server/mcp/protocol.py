"""Request and response bodies of ``/v1/mcp/servers``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class McpServerCreate(BaseModel):
    """A server to register: ``command`` (+ ``args``, ``env``, ``cwd``) for stdio, or ``url``
    (+ ``headers``) for streamable HTTP. ``env`` and ``headers`` are stored sealed and
    never shown again (only their names)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    transport: Literal["stdio", "http"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 30.0
    confine: bool = True
    """stdio: run the command in LLMasOS's sandbox (no view of the LLMasOS home)."""
    network: bool = True
    """stdio, confined: whether the server has the network."""
    read_paths: list[str] = Field(default_factory=list)
    write_paths: list[str] = Field(default_factory=list)


class McpServerOut(BaseModel):
    id: str
    object: Literal["mcp_server"] = "mcp_server"
    name: str
    transport: str
    command: str | None
    args: list[str]
    env: list[str]
    """Names of the environment variables set (values are not shown)."""
    cwd: str | None
    url: str | None
    headers: list[str]
    """Names of the headers sent (values are not shown)."""
    timeout_s: float
    confine: bool | None
    network: bool | None
    read_paths: list[str]
    write_paths: list[str]
    tool_group: str
    """The name a task's tool allow-list uses for all of this server's tools."""
    created_at: int


class McpServerList(BaseModel):
    object: Literal["list"] = "list"
    data: list[McpServerOut]


class McpServerDeleted(BaseModel):
    id: str
    object: Literal["mcp_server.deleted"] = "mcp_server.deleted"
    deleted: bool = True


class McpToolOut(BaseModel):
    name: str
    """The name LLMasOS gives the tool (``mcp_SERVER_TOOL``)."""
    remote_name: str
    description: str
    side_effect: bool
    parameters: dict[str, Any]


class McpToolList(BaseModel):
    object: Literal["list"] = "list"
    server: str
    data: list[McpToolOut]

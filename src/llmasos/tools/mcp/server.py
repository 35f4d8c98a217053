"""LLMasOS as an MCP server: what one principal may use, as MCP tools.

`McpExposure.toolset` is the set a caller sees: every registered tool its scopes allow (the
same `ToolSet.load` the agent runtime uses, so a permission is checked in one place) except
the tools of users' own MCP servers (re-exporting them would let a server that points back at
LLMasOS call itself forever), plus one ``service_NAME`` tool per named service the caller may
call and a ``chat`` tool over the kernel. Calls go through `ToolSet.call`: the arguments are
checked against the schema and run under the tool's timeout; a failure is an MCP tool result
with ``isError`` and a readable text, never a protocol crash.

Side effects: an MCP client has no LLMasOS approval prompt, so a call over MCP is the
caller's own act — the MCP client confirms with its user (tools carry ``readOnlyHint`` /
``destructiveHint`` for that), and what a client can do at all is bounded by its API key's
scopes (docs/design/mcp.md).

`build_server` wires this into the SDK's low-level ``Server``; ``principal_of`` tells who
calls: the key's principal over HTTP (``/mcp``), the machine's owner over stdio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from llmasos.access.principal import Principal
from llmasos.errors import PermissionDeniedError
from llmasos.kernel.interface import GenerateRequest
from llmasos.plugins import PluginRegistry, get_registry
from llmasos.services.runner import ServiceRunner
from llmasos.tools.interface import Tool, ToolContext, ToolResult, ToolSpec, ToolSystem
from llmasos.tools.mcp.client import McpToolProvider
from llmasos.tools.registry import ToolSet
from llmasos.types import ChatMessage, SamplingParams

if TYPE_CHECKING:
    from mcp.server import Server

SERVER_NAME: Final = "llmasos"
CHAT_MAX_TOKENS: Final = 4096


class ServiceTool(Tool):
    """One named service (``summarize``, ``translate`` ...) as a tool."""

    def __init__(self, runner: ServiceRunner, name: str, description: str, schema: Any) -> None:
        self.runner = runner
        self.service = name
        parameters = dict(schema) if isinstance(schema, dict) else {}
        if parameters.get("type") != "object":
            parameters = {"type": "object", "properties": {}}
        self.spec = ToolSpec(
            name=("service_" + re.sub(r"[^a-z0-9_]+", "_", name.lower()))[:64],
            description=f"The {name} service: {description}",
            parameters=parameters,
            permission=f"services:{name}",
            timeout_s=600.0,
        )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        result = await self.runner.call(self.service, arguments, tenant=context.principal.tenant)
        return ToolResult(result.to_dict())


class ChatTool(Tool):
    """One chat completion on the kernel, for MCP clients without a model of their own."""

    spec = ToolSpec(
        name="chat",
        description="Ask a model served by LLMasOS. Returns the model's answer.",
        parameters={
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "system": {"type": "string"},
                "model": {"type": "string", "description": "a model name; default: the OS's"},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": CHAT_MAX_TOKENS},
            },
            "required": ["prompt"],
            "additionalProperties": False,
        },
        permission="chat",
        timeout_s=600.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        model = arguments.get("model") or context.system.settings.default_model
        if not context.principal.allows_model(model):
            raise PermissionDeniedError(f"your key may not use the model {model!r}")
        messages: list[ChatMessage] = []
        if arguments.get("system"):
            messages.append({"role": "system", "content": arguments["system"]})
        messages.append({"role": "user", "content": arguments["prompt"]})
        explicit = frozenset({"max_tokens"}) if "max_tokens" in arguments else frozenset()
        request = GenerateRequest(
            model=model,
            messages=messages,
            sampling=SamplingParams(max_tokens=arguments.get("max_tokens")),
            explicit=explicit,
            tenant=context.principal.tenant,
        )
        parts: list[str] = []
        finish: str | None = None
        served = model
        async for output in context.system.engine.generate(request):
            parts.append(output.text)
            served = output.model or served
            if output.finished:
                finish = output.finish_reason
        return ToolResult({"model": served, "answer": "".join(parts), "finish_reason": finish})


class McpExposure:
    """What LLMasOS offers over MCP, per caller."""

    def __init__(
        self,
        system: ToolSystem | Callable[[], ToolSystem],
        runner: ServiceRunner | None = None,
        registry: PluginRegistry | None = None,
    ) -> None:
        self._system = system
        self.runner = runner
        self._registry = registry

    @property
    def system(self) -> ToolSystem:
        """The tool system (a function giving it is called on first use, per call)."""
        return self._system if isinstance(self._system, ToolSystem) else self._system()

    def _local_registry(self) -> PluginRegistry:
        """The registered tools without users' MCP servers (see the module's docstring)."""
        local = PluginRegistry()
        for target in (self._registry or get_registry()).tools():
            if not isinstance(target, McpToolProvider):
                local.register_tool(target)
        return local

    async def toolset(self, principal: Principal) -> ToolSet:
        context = self.context(principal)
        loaded = await ToolSet.load(context, registry=self._local_registry())
        extra: list[Tool] = []
        if self.runner is not None:
            for definition in self.runner.registry.list():
                extra.append(
                    ServiceTool(
                        self.runner,
                        definition.name,
                        definition.description,
                        definition.input_schema,
                    )
                )
        extra.append(ChatTool())
        taken = set(loaded.names())
        usable = [
            t
            for t in extra
            if principal.allows_scope(t.spec.permission) and t.spec.name not in taken
        ]
        return ToolSet([*loaded.tools(), *usable])

    def context(self, principal: Principal) -> ToolContext:
        return ToolContext(principal=principal, system=self.system)


def build_server(exposure: McpExposure, principal_of: Callable[[Any], Principal]) -> Server[Any]:
    """The SDK's low-level server over ``exposure``; ``principal_of(request_context)`` says
    who calls (it raises to refuse)."""
    import mcp.types as types
    from mcp.server import Server

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        toolset = await exposure.toolset(principal_of(ctx))
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.spec.name,
                    description=tool.spec.description,
                    input_schema=tool.spec.parameters,
                    annotations=types.ToolAnnotations(
                        read_only_hint=not tool.spec.side_effect,
                        destructive_hint=tool.spec.side_effect,
                    ),
                )
                for tool in toolset.tools()
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal = principal_of(ctx)
        toolset = await exposure.toolset(principal)
        result = await toolset.call(
            params.name, params.arguments or {}, exposure.context(principal)
        )
        structured = result.output if isinstance(result.output, dict) else None
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result.text())],
            structured_content=structured,
            is_error=result.is_error,
        )

    return Server(
        SERVER_NAME,
        version=_version(),
        instructions="LLMasOS: the tools, named services and models your key may use.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _version() -> str:
    """LLMasOS's version (``llmasos`` itself is the SDK layer, above this one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmasos")
    except PackageNotFoundError:
        return "0.0.0"


async def serve_stdio(exposure: McpExposure, principal: Principal) -> None:
    """Serve MCP on this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(exposure, lambda _ctx: principal)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

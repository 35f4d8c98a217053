"""Tools: what agents act through, each a JSON schema plus a permission.

A tool is the OS's system call for doing something in the world on a user's behalf: write a
note, create a calendar event, send mail, search the user's knowledge, call a named service.
`interface` defines what a tool is (`Tool`, `ToolSpec`, `ToolContext`, `ToolResult`) and
`registry` collects the tools registered through the plugin mechanism into the set one
principal may use, validates arguments against each schema and runs calls with a timeout.
The agent runtime (``llmasos.agents``), the MCP server and the HTTP API all go through the
same registry, so a tool's permission is checked in one place. The personal tools (notes,
calendar, reminders, mail) keep their state in stores of their own (`notes`, `calendar`,
`reminders`, `notifications`, `mail`, bundled per database by `personal`); their `Tool`
classes are in `builtin`.

May import: services, memory, knowledge, retrieval, access, storage, the kernel's interface
and client, sandbox, and the shared modules (config, errors, types, net, plugins) — never
agents, workflows, apps, sdk, server, cli or webui.
"""

from llmasos.tools.interface import (
    Tool,
    ToolContext,
    ToolError,
    ToolProvider,
    ToolResult,
    ToolSpec,
    ToolSystem,
)

__all__ = [
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolProvider",
    "ToolResult",
    "ToolSpec",
    "ToolSystem",
]

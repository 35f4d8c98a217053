"""MCP both ways, with the official ``mcp`` SDK (docs/design/mcp.md).

* `servers`: the external MCP servers each user registered (stdio command or streamable
  HTTP URL), stored per owner with their environment and headers sealed.
* `client`: connects to one of them, lists its tools (cached briefly) and calls them under
  a timeout; `McpToolProvider` turns a user's servers into `Tool` objects in the groups
  ``mcp:NAME``, registered through ``llmasos.plugins`` like any tool.
* `server`: LLMasOS as an MCP server: the tools a principal may use, the named services and
  chat, served over stdio (``llmasos mcp serve``) or streamable HTTP (``/mcp``).

Part of the tools layer: may import what `llmasos.tools` may; the ``mcp`` package is
imported lazily by the modules that talk the protocol, so ``import llmasos`` stays light.
"""

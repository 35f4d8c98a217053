"""MCP on the HTTP server: ``/v1/mcp/servers`` (the caller's external MCP servers) and the
streamable HTTP MCP endpoint ``/mcp`` (LLMasOS's own tools for the caller's key)."""

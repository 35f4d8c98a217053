"""A stdio MCP server (the SDK's MCPServer) whose one tool tries ways out of its sandbox:
``attempt_all`` runs `tests/sandbox/escapes.py`'s attempts inside the server's process.

Usage: ``python escape_server.py`` (stdio); the escapes script must be readable next to
``tests/sandbox``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox"))
import escapes

server = MCPServer("escapes")


@server.tool()
def attempt_all(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Try each way out (``{"what": ..., **arguments}``); what each one got."""
    return escapes.attempt_all(attempts)


if __name__ == "__main__":
    server.run("stdio")

"""A small real MCP server written with the SDK's MCPServer (FastMCP's successor in mcp 2),
run by the tests as a stdio command or on a loopback port over streamable HTTP.

Usage: ``python weather_server.py stdio`` or ``python weather_server.py http PORT``."""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("weather")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 22 degrees in {city}."


@server.tool()
def add_note(text: str, tags: list[str] | None = None) -> str:
    """Store a note (a side effect: no read-only hint)."""
    return f"noted: {text} {tags or []} (token {os.environ.get('WEATHER_TOKEN', 'none')})"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_file(path: str) -> str:
    """The text of a file, or why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        return f"cannot read: {error.strerror}"


@server.tool()
def crash() -> str:
    """Dies in the middle of the call."""
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answers."""
    time.sleep(3600)
    return "late"


@server.tool()
def fail() -> str:
    """Reports a failure as the tool's result."""
    raise ValueError("the weather station is offline")


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run(
            "streamable-http", host="127.0.0.1", port=int(sys.argv[2]), streamable_http_path="/mcp"
        )
    else:
        server.run("stdio")

"""Settings and an upgraded database on each backend (the storage tests' fixtures), and
the weather MCP server as a stdio command or on a loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmasos.net import free_port
from tests.storage.conftest import database, settings  # noqa: F401 - the same fixtures

WEATHER_SERVER = Path(__file__).with_name("weather_server.py")


def stdio_fields(**extra: object) -> dict[str, object]:
    """Request fields registering the weather server as a stdio command, confined, allowed
    to read its own directory."""
    return {
        "command": sys.executable,
        "args": [str(WEATHER_SERVER)],
        "read_paths": [str(WEATHER_SERVER.parent)],
        **extra,
    }


@pytest.fixture(scope="module")
def weather_url() -> Iterator[str]:
    """The weather server over streamable HTTP on a loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(WEATHER_SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the weather MCP server did not start")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

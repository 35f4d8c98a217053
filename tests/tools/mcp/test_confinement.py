"""A stdio MCP server in its sandbox: the ways out of `tests/sandbox/escapes.py`, tried from
inside a real server (the SDK's MCPServer) driven through our MCP client.

The server (``escape_server.py``) runs the attempts in its own process, through ``ctypes``
and started binaries. It is given a directory holding a fake LLMasOS home (``secret.key``,
another app's data): the client hides the home all the same. Three runs share the module:
confined without network, confined with the network permission, and not confined at all
(the last shows that the files the confined runs cannot reach are there to be reached).
TEST-NET and DNS are tried only without network, where no packet can leave; with the
permission, a loopback listener of the test shows the network is there.

Left to the plain-child tests of `tests/sandbox/test_spawn.py`, which run the same
`llmasos.sandbox.spawn` with the same default limits: the fork bomb and memory past the
limit (slow, and the server's worker threads count against the process limit).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmasos.config import Settings
from llmasos.sandbox import ConfinementMode
from llmasos.tools.mcp import client
from llmasos.tools.mcp.servers import McpServerConfig
from tests.sandbox.conftest import (
    NETWORK_ESCAPES,
    TEST_NET,
    Listener,
    check_files_out_of_reach,
    check_network_escape,
    nameserver,
    require_namespaces,
)

ESCAPE_SERVER = Path(__file__).with_name("escape_server.py")
TESTS = Path(__file__).resolve().parents[2]


@dataclass
class Runs:
    """What each escape got in each run, by label (``what:target``)."""

    root: Path
    other: Listener
    closed: dict[str, dict[str, Any]]
    open: dict[str, dict[str, Any]]
    loose: dict[str, dict[str, Any]]

    @property
    def home(self) -> Path:
        return self.root / "home"


def _attempts(
    root: Path, port: int, *, network: bool, outward: bool, files: bool
) -> dict[str, dict[str, Any]]:
    """The batch of one run; ``outward`` adds TEST-NET and DNS, tried only where no packet
    can leave (with the network granted, the loopback listener shows it)."""
    attempts: dict[str, dict[str, Any]] = {}
    if network:
        for what in NETWORK_ESCAPES:
            attempts[f"{what}:local"] = {"what": what, "host": "127.0.0.1", "port": port}
            if outward:
                attempts[f"{what}:testnet"] = {"what": what, "host": TEST_NET, "port": 80}
    if outward:
        attempts["dns"] = {"what": "dns", "name": "example.com", "nameserver": nameserver()}
    if files:
        home = root / "home"
        for what in ("write_ctypes", "write_subprocess"):
            attempts[f"{what}:outside"] = {"what": what, "path": str(root / f"{what}.txt")}
        attempts["write_ctypes:writable"] = {"what": "write_ctypes", "path": str(root / "w/x")}
        attempts["read_ctypes:secret"] = {"what": "read_ctypes", "path": str(home / "secret.key")}
        other = home / "apps" / "notes" / "data" / "private.txt"
        attempts["read_ctypes:other_app"] = {"what": "read_ctypes", "path": str(other)}
    return attempts


def _run(root: Path, name: str, attempts: dict[str, dict[str, Any]], **fields: Any) -> Any:
    config = McpServerConfig.checked(
        {
            "name": name,
            "command": sys.executable,
            "args": [str(ESCAPE_SERVER)],
            "read_paths": [str(TESTS), str(root)],  # the home is inside: hidden all the same
            "write_paths": [str(root / "w")],
            "timeout_s": 120,
            **fields,
        }
    )
    settings = Settings(home=root / "home")
    result = asyncio.run(
        client.call_tool(
            config,
            "attempt_all",
            {"attempts": list(attempts.values())},
            ConfinementMode.STRICT,
            client.hidden_paths(settings),
        )
    )
    return dict(zip(attempts, result.output, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    require_namespaces()
    root = tmp_path_factory.mktemp("mcp-escapes")
    (root / "w").mkdir()
    data = root / "home" / "apps" / "notes" / "data"
    data.mkdir(parents=True)
    (data / "private.txt").write_text("the notes app's")
    (root / "home" / "secret.key").write_text("do not read")
    other = Listener()
    closed = {
        **_attempts(root, other.port, network=True, outward=True, files=True),
        "ptrace": {"what": "ptrace"},
        "new_namespace": {"what": "new_namespace"},
    }
    found_closed = _run(root, "closed", closed, network=False)
    accepted = other.accepted
    granted = _attempts(root, other.port, network=True, outward=False, files=True)
    found_open = _run(root, "open", granted, network=True)
    files = _attempts(root, other.port, network=False, outward=False, files=True)
    found_loose = _run(root, "loose", files, confine=False)
    assert accepted == 0, "the closed server reached the host's loopback"
    yield Runs(root, other, found_closed, found_open, found_loose)
    other.sock.close()


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_network_escapes_fail_confined_and_work_with_the_permission(runs: Runs, what: str) -> None:
    check_network_escape(runs.closed, runs.open, what)


def test_dns_cannot_leave_a_server_without_network(runs: Runs) -> None:
    assert runs.closed["dns"]["ok"] is False and "ENETUNREACH" in runs.closed["dns"]["error"]


def test_files_outside_the_grant_and_the_home_are_out_of_reach(runs: Runs) -> None:
    for found in (runs.closed, runs.open):
        check_files_out_of_reach(found, "write_ctypes:writable")
    # not confined, the same server reaches all of it: the paths are real
    assert all(result["ok"] for result in runs.loose.values()), runs.loose
    assert (runs.root / "write_ctypes.txt").read_text() == "escaped\n"


@pytest.mark.parametrize("what", ["ptrace", "new_namespace"])
def test_tracing_and_new_namespaces_are_denied(runs: Runs, what: str) -> None:
    result = runs.closed[what]
    assert result["ok"] is False and result["error"].startswith("EPERM"), result

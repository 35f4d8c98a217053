"""Fixtures of the sandbox tests: TCP listeners on the host's loopback (one plays the
kernel's server, one is any other local service), the escape script, and what this
machine provides (tests that need a layer it lacks are skipped and say which)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmasos.sandbox import probe

ESCAPES = Path(__file__).with_name("escapes.py")
TEST_NET = "203.0.113.1"
"""TEST-NET-3 (RFC 5737): an address no one owns."""


def nameserver() -> str:
    """A nameserver address no one owns (TEST-NET-1, RFC 5737). A confined query to it must
    fail before a packet leaves; the tests never send DNS to a real resolver (the machine
    they run on may reach only its loopback) and check the granted case on loopback
    (`DatagramListener`)."""
    return "192.0.2.53"


class _LoopbackSocket:
    """A socket on 127.0.0.1 served by a thread that counts what reaches it."""

    def __init__(self, kind: socket.SocketKind) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.count = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _take(self) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                self._take()
            except OSError:
                return
            self.count += 1

    def wait_for(self, count: int, seconds: float = 5.0) -> bool:
        deadline = time.monotonic() + seconds
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.count >= count


class DatagramListener(_LoopbackSocket):
    """A UDP socket that counts the datagrams it receives (a stand-in nameserver: a query
    reaching it is a query that left)."""

    def __init__(self) -> None:
        super().__init__(socket.SOCK_DGRAM)

    def _take(self) -> None:
        self.sock.recv(4096)


class Listener(_LoopbackSocket):
    """A TCP listener that accepts and closes every connection."""

    def __init__(self) -> None:
        super().__init__(socket.SOCK_STREAM)

    @property
    def accepted(self) -> int:
        return self.count

    def _take(self) -> None:
        connection, _ = self.sock.accept()
        connection.close()


@pytest.fixture
def kernel_listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.sock.close()


@pytest.fixture
def other_listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.sock.close()


@pytest.fixture
def local_nameserver() -> Iterator[DatagramListener]:
    listener = DatagramListener()
    yield listener
    listener.sock.close()


NETWORK_ESCAPES = ["socket_connect", "ctypes_connect", "binary_connect", "curl_connect"]
"""The ways out a program may try to a TCP port: Python's socket, libc through ctypes, a
started Python and curl."""
FILE_ESCAPES = (
    "write_ctypes:outside",
    "write_subprocess:outside",
    "read_ctypes:secret",
    "read_ctypes:other_app",
)
"""Labels of the file attempts a batch runs (see the MCP and code tool tests): each must fail."""


def check_network_escape(closed: dict[str, Any], opened: dict[str, Any], what: str) -> None:
    """A batch's results for one network escape: confined, neither the host's loopback
    (``WHAT:local``) nor TEST-NET is reached; granted the network, the loopback is."""
    if opened[f"{what}:local"].get("skipped"):
        pytest.skip(opened[f"{what}:local"]["error"])
    assert closed[f"{what}:local"]["ok"] is False, closed[f"{what}:local"]
    assert closed[f"{what}:testnet"]["ok"] is False
    assert opened[f"{what}:local"]["ok"] is True, opened[f"{what}:local"]


def check_files_out_of_reach(found: dict[str, Any], writable: str) -> None:
    """Every `FILE_ESCAPES` attempt failed and the write to ``writable`` worked."""
    for label in FILE_ESCAPES:
        assert found[label]["ok"] is False, (label, found[label])
    assert found[writable]["ok"] is True


def require_namespaces() -> None:
    support = probe()
    if not support.namespaces:
        pytest.skip(f"no namespaces on this machine: {support.namespaces_detail}")
    if not support.seccomp:
        pytest.skip(f"no seccomp on this machine: {support.seccomp_detail}")


def require_cgroups() -> None:
    support = probe()
    if support.cgroup.version is None:
        pytest.skip(f"no writable cgroups on this machine: {support.cgroup.detail}")

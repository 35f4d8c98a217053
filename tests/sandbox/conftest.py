"""Fixtures of the sandbox tests: TCP listeners on the host's loopback (one plays the
kernel's server, one is any other local service), the escape script, and what this
machine provides (tests that need a layer it lacks are skipped and say which)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


class DatagramListener:
    """A UDP socket on 127.0.0.1 that counts the datagrams it receives (a stand-in
    nameserver: a query reaching it is a query that left)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.received = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                self.sock.recv(4096)
            except OSError:
                return
            self.received += 1

    def wait_for(self, count: int, seconds: float = 5.0) -> bool:
        deadline = time.monotonic() + seconds
        while self.received < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received >= count


class Listener:
    """A TCP listener on 127.0.0.1 that accepts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
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

"""A real Ray cluster of separate process trees for the integration tests: each node is
``llmasos cluster start|join --block`` (nice 10) with its own temporary directory, and
`Node.kill` ends exactly the tree it started (never ``ray stop``, which would stop every
Ray process of the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import ray

from llmasos.distributed.cluster import ClusterError, connect

FAST_FAILURE_DETECTION = {
    # the GCS declares a silent node dead after ~1.5 s instead of ~30 s
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    temp_dir: str
    log: Path

    def kill(self) -> None:
        """SIGKILL this node's whole process tree (raylet, workers, GCS on the head)."""
        try:
            tree = [psutil.Process(self.process.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


@dataclass
class Cluster:
    address: str
    head: Node
    workers: list[Node] = field(default_factory=list)
    root: str = ""


def start_node(args: list[str], root: str, name: str) -> Node:
    temp_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=root)
    log = Path(root) / f"{name}.log"
    command = ["nice", "-n", "10", sys.executable, "-m", "llmasos", "cluster", *args]
    command += ["--temp-dir", temp_dir, "--object-store-memory", "100MB", "--block"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **FAST_FAILURE_DETECTION},
        )
    return Node(process, temp_dir, log)


def wait_nodes(count: int, nodes: list[Node], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for n in ray.nodes() if n["Alive"]) < count:
        for node in nodes:
            if node.process.poll() is not None:
                pytest.fail(f"a Ray node exited: {node.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the cluster did not reach {count} nodes")
        time.sleep(0.5)


def connect_when_up(address: str, head: Node, timeout: float = 60) -> None:
    """Connect this process to the head at ``address`` once it answers; fail the test with
    the head's log if it exits or does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(address)
            return
        except ClusterError:
            if head.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the head did not start: {head.log.read_text()[-2000:]}")
            time.sleep(0.5)


@contextlib.contextmanager
def head_and_two_workers(prefix: str, worker_memory: str) -> Iterator[Cluster]:
    """A head with no CPUs (so nothing is placed on it) and two workers of one CPU and
    ``worker_memory`` each, this process connected; everything ended and removed after."""
    from llmasos.distributed.cluster import local_ip
    from llmasos.net import free_port

    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths
    port = free_port()
    address = f"{local_ip()}:{port}"
    head = start_node(["start", "--head", "--port", str(port), "--num-cpus", "0"], root, "head")
    nodes = [head]
    try:
        connect_when_up(address, head)
        for index in range(2):
            join = ["join", address, "--num-cpus", "1", "--memory", worker_memory]
            nodes.append(start_node(join, root, f"w{index}"))
        wait_nodes(3, nodes)
        yield Cluster(address, head, nodes[1:], root)
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)

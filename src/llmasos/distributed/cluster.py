"""The cluster itself: thin wrappers over Ray's own ``ray start`` / ``ray stop`` and its API.

LLMasOS does no orchestration of its own: ``llmasos cluster start --head`` is ``ray start
--head`` with our defaults (no dashboard, no usage stats), ``join`` is ``ray start
--address``, ``stop`` is ``ray stop`` (which, as Ray documents, stops every Ray process of
this machine), and ``status`` reads Ray's public API (`ray.nodes`, the cluster's resources)
plus our replicas' own reports. Every failure is one readable `ClusterError` line: Ray not
installed (with the install command), no cluster at an address, ``ray start`` refusing.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.errors import ClusterError

__all__ = ["ClusterError", "ClusterStatus", "connect", "connected", "join", "start_head", "stop"]

INSTALL_HINT = "pip install 'llmasos[cluster]'"
DEFAULT_PORT = 6379


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise ClusterError(f"Ray is not installed: {INSTALL_HINT}")


def ray_command() -> list[str]:
    """The ``ray`` CLI of this Python environment (the one our package is installed in)."""
    require_ray()
    beside = Path(sys.executable).parent / "ray"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ray")
    if found:
        return [found]
    return [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run_ray(args: Sequence[str], *, block: bool = False) -> str:
    """Run ``ray ARGS``; its output, or a `ClusterError` with the line that says why."""
    command = [*ray_command(), *args]
    if block:  # foreground: Ray's own output and exit status are the user's
        code = subprocess.call(command)
        if code != 0:
            raise ClusterError(f"ray {args[0]} exited with status {code}")
        return ""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = _last_line(result.stderr or result.stdout)
        raise ClusterError(f"ray {args[0]} failed: {detail}")
    return result.stdout + result.stderr


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{address!r} is not a cluster address: use HOST:PORT")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 2.0) -> None:
    """A `ClusterError` naming ``address`` when nothing listens there."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ClusterError(
            f"no Ray cluster at {address} ({error.strerror or error}): start one with "
            "`llmasos cluster start --head` on the head machine"
        ) from error


def node_args(
    *,
    num_cpus: int | None,
    num_gpus: int | None,
    memory: int | None,
    object_store_memory: int | None,
    resources: str | None,
    temp_dir: str | None,
    block: bool,
) -> list[str]:
    args = ["--disable-usage-stats"]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if memory is not None:
        args += ["--memory", str(memory)]
    if object_store_memory is not None:
        args += ["--object-store-memory", str(object_store_memory)]
    if resources:
        args += ["--resources", resources]
    if temp_dir:
        args += ["--temp-dir", temp_dir]
    if block:
        args.append("--block")
    return args


def start_head(port: int = DEFAULT_PORT, *, host: str | None = None, **node: Any) -> str:
    """``ray start --head``; the address workers join (HOST:PORT)."""
    args = ["start", "--head", "--port", str(port), "--include-dashboard=false"]
    if host:
        args += ["--node-ip-address", host]
    run_ray(args + node_args(**node), block=node.get("block", False))
    return f"{host or local_ip()}:{port}"


def join(address: str, **node: Any) -> None:
    """``ray start --address ADDRESS``: this machine becomes a worker node."""
    check_reachable(address)
    run_ray(["start", "--address", address, *node_args(**node)], block=node.get("block", False))


def stop(*, force: bool = False) -> str:
    """``ray stop``: every Ray process of this machine (head or worker) ends."""
    return _last_line(run_ray(["stop", *(["--force"] if force else [])]))


def local_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def connect(address: str | None) -> bool:
    """Make this process a Ray driver of the cluster at ``address`` (``auto``: the one on
    this machine); True if this call connected (False: it already was). `ClusterError`
    when there is no cluster there."""
    require_ray()
    import ray

    from llmasos.distributed.replica import NAMESPACE

    if ray.is_initialized():
        return False
    if address and address != "auto":
        check_reachable(address)
    try:
        ray.init(
            address=address or "auto",
            namespace=NAMESPACE,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError) as error:
        where = f"at {address}" if address and address != "auto" else "on this machine"
        raise ClusterError(
            f"no Ray cluster {where}: start one with `llmasos cluster start --head` "
            f"or give --address ({_last_line(str(error))})"
        ) from error
    return True


@contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """`connect` for the duration of a block (disconnecting only if it connected)."""
    owned = connect(address)
    import ray

    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


@dataclass
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    head: bool
    resources: dict[str, float]


@dataclass
class ClusterStatus:
    address: str
    nodes: list[NodeStatus]
    total: dict[str, float]
    available: dict[str, float]
    replicas: list[dict[str, Any]] = field(default_factory=list)
    autoscaling: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "nodes": [node.__dict__ for node in self.nodes],
            "resources": {"total": self.total, "available": self.available},
            "replicas": self.replicas,
            "autoscaling": self.autoscaling,
        }


def _plain(resources: dict[str, float]) -> dict[str, float]:
    """Ray's resources without its per-node bookkeeping keys (``node:…``)."""
    return {k: float(v) for k, v in sorted(resources.items()) if not k.startswith("node:")}


def status(address: str | None) -> ClusterStatus:
    """The nodes, resources and LLMasOS replicas of the cluster at ``address``."""
    from llmasos.distributed.deploy import list_controllers, list_replicas

    with connected(address) as ray:
        nodes = [
            NodeStatus(
                node_id=node["NodeID"],
                address=f"{node['NodeManagerAddress']}",
                alive=bool(node["Alive"]),
                head="node:__internal_head__" in node.get("Resources", {}),
                resources=_plain(node.get("Resources", {})),
            )
            for node in ray.nodes()
        ]
        gcs = ray.get_runtime_context().gcs_address
        return ClusterStatus(
            address=gcs,
            nodes=nodes,
            total=_plain(ray.cluster_resources()),
            available=_plain(ray.available_resources()),
            replicas=list_replicas(),
            autoscaling=list_controllers(),
        )

"""Deployments: N replicas of a model as detached Ray actors, placed by the resources they need.

``llmasos deploy MODEL --replicas N`` runs on the head: it resolves MODEL in the head's store,
registers the weights with the head's `BlobSource`, checks that some node can hold a replica
(else one line naming the largest node), then creates or removes named, detached
`ModelReplica` actors until N are alive (``replica:<model>:<i>`` in the ``llmasos``
namespace, spread across nodes) and waits until each has fetched and loaded its model.
A replica that died is replaced by running ``deploy`` again. Autoscaling between a minimum
and a maximum on queue depth is not built yet.
Callers hold a connection (`cluster.connected`) around these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from llmasos.config import Settings
from llmasos.distributed.modelfetch import main_file
from llmasos.distributed.replica import (
    BLOB_SOURCE_NAME,
    NAMESPACE,
    BlobSource,
    ModelReplica,
    parse_replica_name,
    replica_name,
)
from llmasos.errors import ClusterError
from llmasos.models import ModelStoreInterface

KERNEL_SETTINGS = (
    "threads",
    "context_length",
    "default_max_tokens",
    "max_batch_size",
    "kv_cache_tokens",
    "max_batch_tokens",
    "max_prefill_while_decoding",
    "scheduler_policy",
    "max_queue",
    "request_timeout",
    "backend",
)
"""The settings a replica's kernel runs with, taken from the head; nothing else (no database
URL, no mail passwords) leaves the head."""
START_TIMEOUT = 600.0
INFO_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReplicaResources:
    """What one replica reserves on its node (Ray's logical resources)."""

    num_cpus: float = 1.0
    memory: int | None = None
    """Bytes; None means twice the model's size plus 256 MiB for the KV cache and runtime."""
    num_gpus: float = 0.0

    def memory_for(self, model_bytes: int) -> int:
        return self.memory if self.memory is not None else 2 * model_bytes + (256 << 20)


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def check_fits(model: str, needs: dict[str, float]) -> None:
    """A `ClusterError` naming the largest node when no alive node can hold one replica."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    for node in nodes:
        have = node.get("Resources", {})
        if all(have.get(key, 0.0) >= amount for key, amount in needs.items() if amount):
            return
    largest = max(nodes, key=lambda n: n["Resources"].get("CPU", 0.0), default=None)
    have = largest["Resources"] if largest else {}
    raise ClusterError(
        f"no node can hold a replica of {model}: it needs {needs.get('CPU', 0):g} CPU, "
        f"{_gib(needs.get('memory', 0))} memory, {needs.get('GPU', 0):g} GPU; the largest node "
        f"has {have.get('CPU', 0):g} CPU, {_gib(have.get('memory', 0))} memory, "
        f"{have.get('GPU', 0):g} GPU"
    )


def blob_source() -> Any:
    """The head's `BlobSource` (created on this node, the head, on first use)."""
    try:
        return ray.get_actor(BLOB_SOURCE_NAME, namespace=NAMESPACE)
    except ValueError:
        here = ray.get_runtime_context().get_node_id()
        return BlobSource.options(  # type: ignore[attr-defined]
            name=BLOB_SOURCE_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote()


def _alive_replicas(model: str) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != NAMESPACE:
            continue
        parsed = parse_replica_name(entry["name"])
        if parsed is not None and parsed[0] == model:
            try:
                found[parsed[1]] = ray.get_actor(entry["name"], namespace=NAMESPACE)
            except ValueError:
                continue
    return found


def deploy(
    settings: Settings,
    store: ModelStoreInterface,
    model: str,
    replicas: int,
    *,
    resources: ReplicaResources | None = None,
    cache_dir: str = "~/.cache/llmasos/cluster",
    copy: bool = False,
) -> list[dict[str, Any]]:
    """Scale ``model`` to ``replicas`` live replicas; their reports (see `ModelReplica.info`)."""
    resources = resources or ReplicaResources()
    resolved = store.resolve(model)
    manifest = resolved.manifest
    if manifest.kind != "generate":
        raise ClusterError(f"{manifest.name} is an embedding model: replicas serve generation")
    digest, size = main_file(manifest)
    name = manifest.name
    memory = resources.memory_for(size)
    needs = {"CPU": resources.num_cpus, "memory": float(memory), "GPU": resources.num_gpus}
    existing = _alive_replicas(name)
    if any(index not in existing for index in range(replicas)):
        check_fits(name, needs)
    for index, actor in existing.items():
        if index >= replicas:
            ray.kill(actor, no_restart=True)
    if replicas == 0:
        return []
    ray.get(blob_source().register.remote(digest, str(resolved.path)))
    threads = max(1, int(resources.num_cpus))
    kernel = {name: getattr(settings, name) for name in KERNEL_SETTINGS} | {"threads": threads}
    starting = []
    for index in range(replicas):
        if index in existing:
            continue
        actor = ModelReplica.options(  # type: ignore[attr-defined]
            name=replica_name(name, index),
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
            memory=memory,
            scheduling_strategy="SPREAD",
            max_restarts=0,
        ).remote(kernel, manifest.to_json(), str(resolved.path), cache_dir, copy)
        starting.append((index, actor, actor.start.remote()))
    failures = []
    for index, actor, ready in starting:
        try:
            ray.get(ready, timeout=START_TIMEOUT)
        except Exception as error:  # a replica that cannot start is removed, and named
            ray.kill(actor, no_restart=True)
            cause = getattr(error, "cause", None) or error
            failures.append(f"replica {index}: {str(cause).strip().splitlines()[-1]}")
    if failures:
        raise ClusterError(
            f"{name}: {len(failures)} replica(s) did not start: " + "; ".join(failures)
        )
    return [r for r in list_replicas() if r["model"] == name]


def list_replicas() -> list[dict[str, Any]]:
    """Every LLMasOS replica of the cluster, with its report (or ``state: unreachable``)."""
    reports = []
    for entry in sorted(ray.util.list_named_actors(all_namespaces=True), key=lambda e: e["name"]):
        if entry.get("namespace") != NAMESPACE:
            continue
        parsed = parse_replica_name(entry["name"])
        if parsed is None:
            continue
        report: dict[str, Any] = {"name": entry["name"], "model": parsed[0], "index": parsed[1]}
        try:
            actor = ray.get_actor(entry["name"], namespace=NAMESPACE)
            report.update(ray.get(actor.info.remote(), timeout=INFO_TIMEOUT), state="ready")
        except Exception:  # dead, or its node is gone: report it, do not fail the listing
            report["state"] = "unreachable"
        reports.append(report)
    return reports

"""Deployments: replicas of a model as detached Ray actors, placed by the resources they need.

``llmasos deploy MODEL --replicas N`` runs on the head: it resolves MODEL in the head's store,
registers the weights with the head's `BlobSource`, checks that some node can hold a replica
(else one line naming the largest node), then creates or retires named, detached
`ModelReplica` actors until N are alive (``replica:<model>:<i>`` in the ``llmasos``
namespace, spread across nodes) and waits until each has fetched and loaded its model.
A replica that died is replaced by running ``deploy`` again.

With ``--engine vllm`` the replicas are `VllmReplica` actors (vLLM's OpenAI server as a child
process on the node, see `vllm_replica`) instead of `ModelReplica` ones; everything else —
placement, naming, routing, draining, autoscaling — is the same.

With ``--min``/``--max`` the deployment autoscales: a detached `DeploymentController`
(``autoscaler:<model>``, on the head) looks at its queue depth every second and adds or
retires replicas by the `autoscale.Autoscaler` policy; it also replaces replicas that died.
Retiring a replica always drains it first (`ModelReplica.drain`: no new request, the
running ones finish), so scaling down cuts no request off.
Callers hold a connection (`cluster.connected`) around these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from llmasos.config import Settings
from llmasos.distributed.autoscale import AutoscalePolicy, Autoscaler
from llmasos.distributed.modelfetch import main_file
from llmasos.distributed.replica import (
    BLOB_SOURCE_NAME,
    NAMESPACE,
    BlobSource,
    ModelReplica,
    parse_replica_name,
    replica_name,
)
from llmasos.distributed.vllm_replica import VllmReplica
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
    "cluster_stream_interval",
)
"""The settings a replica's kernel runs with, taken from the head; nothing else (no database
URL, no mail passwords) leaves the head."""
START_TIMEOUT = 600.0
VLLM_START_TIMEOUT = 1800.0
"""A vLLM replica's first start on a node installs vLLM (minutes) and, with ``--compile``,
compiles its graphs (minutes more on a small CPU)."""
INFO_TIMEOUT = 10.0
CONTROLLER_PREFIX = "autoscaler:"
REPORT_TTL = 15.0
"""Seconds an API server's report of its router queue counts; an older one is dropped (that
server is gone)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaResources:
    """What one replica reserves on its node (Ray's logical resources)."""

    num_cpus: float = 1.0
    memory: int | None = None
    """Bytes; None means twice the model's size plus 256 MiB for the KV cache and runtime."""
    num_gpus: float = 0.0

    def memory_for(self, model_bytes: int) -> int:
        return self.memory if self.memory is not None else 2 * model_bytes + (256 << 20)


@dataclass(frozen=True)
class EngineSpec:
    """Which engine a replica runs: our kernel (``llmasos``), vLLM's server (``vllm``), or
    ``auto``: vLLM for replicas that hold GPUs (our llama.cpp build computes on CPUs), our
    kernel otherwise (`resolve`)."""

    name: str = "auto"
    tensor_parallel: int = 1
    """vLLM: GPUs of one node one model is split across (``--tensor-parallel-size``)."""
    pipeline_parallel: int = 1
    """vLLM: nodes one model is split across, through vLLM's Ray executor."""
    eager: bool = True
    """vLLM: no torch.compile or CUDA graphs (starts in seconds, decodes somewhat slower)."""

    def resolve(self, resources: ReplicaResources) -> EngineSpec:
        """This spec with ``auto`` made concrete for ``resources``, checked (`check`)."""
        name = self.name
        if name == "auto":
            split = self.tensor_parallel > 1 or self.pipeline_parallel > 1
            name = "vllm" if resources.num_gpus > 0 or split else "llmasos"
        resolved = dataclasses.replace(self, name=name)
        resolved.check(resources)
        return resolved

    def check(self, resources: ReplicaResources) -> None:
        """A `ClusterError` for options that do not fit together."""
        if self.name not in ("llmasos", "vllm"):
            raise ClusterError(f"unknown engine {self.name!r}: auto, llmasos or vllm")
        if self.name != "vllm" and (self.tensor_parallel > 1 or self.pipeline_parallel > 1):
            raise ClusterError("--tensor-parallel and --pipeline-parallel need --engine vllm")
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1:
            raise ClusterError("--tensor-parallel and --pipeline-parallel must be >= 1")
        if self.tensor_parallel > 1 and resources.num_gpus < self.tensor_parallel:
            raise ClusterError(
                f"--tensor-parallel {self.tensor_parallel} splits the model across that many "
                f"GPUs of a node: give --gpus-per-replica {self.tensor_parallel}"
            )
        if self.pipeline_parallel > 1 and resources.num_gpus <= 0:
            raise ClusterError(
                "--pipeline-parallel spreads a model across GPU nodes: it needs GPUs"
            )


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


def controller_name(model: str) -> str:
    return f"{CONTROLLER_PREFIX}{model}"


def alive_replicas(model: str) -> dict[int, Any]:
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


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to start one more replica of a model (the controller keeps one)."""

    model: str
    kernel: dict[str, Any]
    manifest_json: str
    head_path: str
    cache_dir: str
    copy: bool
    num_cpus: float
    num_gpus: float
    memory: int
    needs: dict[str, float] = field(default_factory=dict)
    engine: EngineSpec = field(default_factory=EngineSpec)
    vllm_python: str | None = None

    @property
    def capacity(self) -> int:
        return int(self.kernel.get("max_batch_size", 8))


def replica_spec(
    settings: Settings,
    store: ModelStoreInterface,
    model: str,
    resources: ReplicaResources,
    cache_dir: str,
    copy: bool,
    engine: EngineSpec | None = None,
) -> ReplicaSpec:
    """What a replica of ``model`` runs with; registers its weights with the `BlobSource`."""
    resolved = store.resolve(model)
    manifest = resolved.manifest
    if manifest.kind != "generate":
        raise ClusterError(f"{manifest.name} is an embedding model: replicas serve generation")
    engine = (engine or EngineSpec()).resolve(resources)
    digest, size = main_file(manifest)
    memory = resources.memory_for(size)
    gpus = resources.num_gpus
    if engine.pipeline_parallel > 1:
        gpus = 0.0  # vLLM's Ray executor reserves the GPUs of every stage itself
    threads = max(1, int(resources.num_cpus))
    kernel = {name: getattr(settings, name) for name in KERNEL_SETTINGS} | {"threads": threads}
    ray.get(blob_source().register.remote(digest, str(resolved.path)))
    return ReplicaSpec(
        model=manifest.name,
        kernel=kernel,
        manifest_json=manifest.to_json(),
        head_path=str(resolved.path),
        cache_dir=cache_dir,
        copy=copy,
        num_cpus=resources.num_cpus,
        num_gpus=gpus,
        memory=memory,
        needs={"CPU": resources.num_cpus, "memory": float(memory), "GPU": gpus},
        engine=engine,
        vllm_python=settings.vllm_python,
    )


def start_replicas(spec: ReplicaSpec, indices: list[int]) -> list[str]:
    """Start replicas ``indices`` of ``spec`` and wait until they serve; one line per failure
    (a replica that cannot start is removed)."""
    starting = []
    vllm = spec.engine.name == "vllm"
    kind: Any = VllmReplica if vllm else ModelReplica
    for index in indices:
        options = kind.options(
            name=replica_name(spec.model, index),
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
            memory=spec.memory,
            scheduling_strategy="SPREAD",
            max_restarts=0,
        )
        args = (spec.kernel, spec.manifest_json, spec.head_path, spec.cache_dir, spec.copy)
        if vllm:
            vllm_options = {
                "tensor": spec.engine.tensor_parallel,
                "pipeline": spec.engine.pipeline_parallel,
                "gpu": spec.num_gpus > 0 or spec.engine.pipeline_parallel > 1,
                "eager": spec.engine.eager,
                "python": spec.vllm_python,
            }
            actor = options.remote(*args, vllm_options)
        else:
            actor = options.remote(*args)
        starting.append((index, actor, actor.start.remote()))
    failures = []
    for index, actor, ready in starting:
        try:
            ray.get(ready, timeout=VLLM_START_TIMEOUT if vllm else START_TIMEOUT)
        except Exception as error:  # a replica that cannot start is removed, and named
            ray.kill(actor, no_restart=True)
            cause = getattr(error, "cause", None) or error
            failures.append(f"replica {index}: {str(cause).strip().splitlines()[-1]}")
    return failures


def retire(actor: Any, timeout: float) -> bool:
    """Drain a replica (no new request; the running ones finish), then stop it. True when it
    drained in time; False when ``timeout`` passed and it was stopped anyway."""
    deadline = time.monotonic() + timeout
    drained = False
    try:
        active = ray.get(actor.drain.remote(), timeout=INFO_TIMEOUT)
        while active and time.monotonic() < deadline:
            time.sleep(0.2)
            active = ray.get(actor.info.remote(), timeout=INFO_TIMEOUT)["active"]
        drained = not active
        ray.get(actor.stop.remote(), timeout=INFO_TIMEOUT)
    except Exception:  # gone already, or stuck: it is killed below either way
        pass
    ray.kill(actor, no_restart=True)
    return drained


def stop_controller(model: str) -> None:
    """End ``model``'s autoscaling (its replicas stay; the ones it was draining finish)."""
    try:
        controller = ray.get_actor(controller_name(model), namespace=NAMESPACE)
    except ValueError:
        return
    with contextlib.suppress(Exception):  # it died on its own: nothing to wait for
        ray.get(controller.stop.remote(), timeout=START_TIMEOUT)
    ray.kill(controller, no_restart=True)


def _record_path(settings: Settings) -> Path:
    return settings.home / "cluster" / "deployments.json"


def recorded_deployments(settings: Settings) -> dict[str, dict[str, Any]]:
    """The deployments `deploy` made from this home, by model: what to redeploy on a cluster
    that lost them (a restarted head keeps no detached actor)."""
    try:
        data = json.loads(_record_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record(settings: Settings, model: str, entry: dict[str, Any] | None) -> None:
    records = recorded_deployments(settings)
    if entry is None:
        records.pop(model, None)
    else:
        records[model] = entry
    path = _record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(records, indent=2, sort_keys=True))
    temporary.replace(path)


def redeploy(settings: Settings, store: ModelStoreInterface, model: str) -> list[dict[str, Any]]:
    """Deploy ``model`` again as it was recorded (after a head restart)."""
    entry = recorded_deployments(settings).get(model)
    if entry is None:
        raise ClusterError(f"{model} has no recorded deployment")
    policy = entry.get("autoscale")
    return deploy(
        settings,
        store,
        model,
        int(entry["replicas"]),
        resources=ReplicaResources(**entry["resources"]),
        cache_dir=str(entry["cache_dir"]),
        copy=bool(entry["copy"]),
        autoscale=AutoscalePolicy(**policy) if policy else None,
        engine=EngineSpec(**entry.get("engine") or {}),
    )


def deploy(
    settings: Settings,
    store: ModelStoreInterface,
    model: str,
    replicas: int,
    *,
    resources: ReplicaResources | None = None,
    cache_dir: str = "~/.cache/llmasos/cluster",
    copy: bool = False,
    autoscale: AutoscalePolicy | None = None,
    engine: EngineSpec | None = None,
) -> list[dict[str, Any]]:
    """Scale ``model`` to ``replicas`` live replicas (within ``autoscale``'s bounds, which
    then keep applying); their reports (see `ModelReplica.info`)."""
    resources = resources or ReplicaResources()
    if autoscale is not None:
        replicas = autoscale.clamp(replicas)
    spec = replica_spec(settings, store, model, resources, cache_dir, copy, engine)
    name = spec.model
    stop_controller(name)  # one writer at a time; a new one starts below when asked
    existing = alive_replicas(name)
    if any(index not in existing for index in range(replicas)):
        check_fits(name, spec.needs)
    for index, actor in existing.items():
        if index >= replicas:
            retire(actor, settings.request_timeout)
        else:
            actor.drain.remote(False)  # one a stopped controller was draining serves again
    record = {
        "replicas": replicas,
        "resources": dataclasses.asdict(resources),
        "cache_dir": cache_dir,
        "copy": copy,
        "autoscale": autoscale.to_json() if autoscale else None,
        "engine": dataclasses.asdict(spec.engine),
    }
    _record(settings, name, record if replicas else None)
    if replicas == 0:
        return []
    failures = start_replicas(spec, [i for i in range(replicas) if i not in existing])
    if failures:
        raise ClusterError(
            f"{name}: {len(failures)} replica(s) did not start: " + "; ".join(failures)
        )
    if autoscale is not None:
        here = ray.get_runtime_context().get_node_id()
        controller = DeploymentController.options(  # type: ignore[attr-defined]
            name=controller_name(name),
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote(spec, autoscale)
        ray.get(controller.status.remote(), timeout=START_TIMEOUT)
        controller.run.remote()
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
            info: Any = ray.get(actor.info.remote(), timeout=INFO_TIMEOUT)
            state = "draining" if info.get("draining") else "ready"
            if not info.get("loaded", True):
                state = "starting"  # still fetching or loading its model: not routed to yet
            report.update(info, state=state)
        except Exception:  # dead, or its node is gone: report it, do not fail the listing
            report["state"] = "unreachable"
        reports.append(report)
    return reports


def list_controllers() -> list[dict[str, Any]]:
    """The autoscaling deployments of the cluster, each with its controller's status."""
    found: list[dict[str, Any]] = []
    for entry in sorted(ray.util.list_named_actors(all_namespaces=True), key=lambda e: e["name"]):
        if entry.get("namespace") != NAMESPACE or not entry["name"].startswith(CONTROLLER_PREFIX):
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=NAMESPACE)
            status: Any = ray.get(actor.status.remote(), timeout=INFO_TIMEOUT)
            found.append(status)
        except Exception:  # gone between the listing and the call
            continue
    return found


@ray.remote
class DeploymentController:
    """One autoscaling deployment: looks at its queue depth, starts and retires replicas.

    A threaded actor: `run` loops in one thread while `report` (the API servers' router
    queues), `status` and `stop` are served by the others."""

    def __init__(self, spec: ReplicaSpec, policy: AutoscalePolicy) -> None:
        self.spec = spec
        self.policy = policy
        self.autoscaler = Autoscaler(policy, capacity=spec.capacity, now=time.monotonic())
        self.reports: dict[str, tuple[int, float]] = {}
        self.draining: dict[int, Any] = {}
        self.draining_since: dict[int, float] = {}
        self.load = 0.0
        self.replicas = 0
        self.events: list[str] = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def report(self, server: str, waiting: int) -> None:
        """An API server's count of requests for this model waiting in its router."""
        with self.lock:
            self.reports[server] = (waiting, time.monotonic())

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "model": self.spec.model,
                "policy": self.policy.to_json(),
                "target": self.autoscaler.target,
                "replicas": self.replicas,
                "draining": sorted(self.draining),
                "load": self.load,
                "events": list(self.events[-20:]),
            }

    def stop(self) -> None:
        """End the loop once the replicas it is draining have finished."""
        self.stopped.set()
        for index, actor in list(self.draining.items()):
            retire(actor, self.policy.drain_timeout)
            self.draining.pop(index, None)

    def run(self) -> None:
        while not self.stopped.wait(self.policy.interval):
            try:
                self.tick()
            except Exception:  # a bad look (a replica went away mid-call): try next tick
                logger.exception("autoscaler of %s: tick failed", self.spec.model)

    def _event(self, text: str) -> None:
        with self.lock:
            self.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    def tick(self) -> None:
        now = time.monotonic()
        alive = alive_replicas(self.spec.model)
        serving: dict[int, Any] = {}
        load = 0.0
        for index, actor in alive.items():
            if index in self.draining:
                continue
            try:
                info = ray.get(actor.info.remote(), timeout=INFO_TIMEOUT)
            except Exception:  # dead: it leaves the listing, and is replaced below
                continue
            serving[index] = actor
            load += int(info.get("running", 0)) + int(info.get("waiting", 0))
        with self.lock:
            self.reports = {s: r for s, r in self.reports.items() if now - r[1] < REPORT_TTL}
            load += sum(waiting for waiting, _ in self.reports.values())
            self.load, self.replicas = load, len(serving)
        for index, actor in list(self.draining.items()):
            try:
                active = ray.get(actor.info.remote(), timeout=INFO_TIMEOUT)["active"]
            except Exception:  # died while draining: nothing left to wait for
                active = 0
            if not active or now - self.draining_since.get(index, now) > self.policy.drain_timeout:
                drained = retire(actor, 0)
                self.draining.pop(index)
                self.draining_since.pop(index, None)
                self._event(f"replica {index} {'drained' if drained else 'timed out'}, stopped")
        wanted = self.autoscaler.decide(len(serving), load, now)
        if wanted > len(serving):
            taken = set(alive) | set(self.draining)
            free = [i for i in range(len(taken) + wanted) if i not in taken]
            new = free[: wanted - len(serving)]
            self._event(f"load {load:g}: starting replica(s) {new}")
            for failure in start_replicas(self.spec, new):
                self._event(f"start failed: {failure}")
        elif wanted < len(serving):
            for index in sorted(serving, reverse=True)[: len(serving) - wanted]:
                serving[index].drain.remote()
                self.draining[index] = serving[index]
                self.draining_since[index] = now
                self._event(f"load {load:g}: draining replica {index}")

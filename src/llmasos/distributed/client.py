"""The cluster engine client: `EngineClientInterface` over model replicas on a Ray cluster.

``llmasos serve --cluster-address HOST:PORT`` uses it instead of the in-process kernel. A
request for a model deployed on the cluster goes through the `ClusterRouter` (prefix
affinity, the power of two choices, one fair queue per model with one virtual token counter
per tenant for the whole cluster) to a `ModelReplica`, and its deltas stream back through a
Ray streaming generator. Models that are not deployed (the embedding model, anything else
in the head's store) run in the in-process kernel of this server, exactly as without a
cluster, and so do jobs (`run_job`: transcription, OCR, synthesis), in this server's job
lanes.

Fail-over: when a replica dies mid-stream (its node left, its process crashed), the request
moves to another replica and resumes from the rendered prompt plus the text already sent
(a raw continuation), so the client sees no duplicate tokens; with no replica left, or for a
grammar-constrained reply that cannot resume, it ends with one clear `ClusterError`. Every
wait is bounded by the request's timeout, so nothing hangs on a dead node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import ray
import ray.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from llmasos.config import Settings
from llmasos.distributed.cluster import ClusterError, check_reachable, connect
from llmasos.distributed.deploy import (
    alive_replicas,
    controller_name,
    list_replicas,
    recorded_deployments,
    redeploy,
)
from llmasos.distributed.replica import NAMESPACE, ReplicaDraining, ReplicaError
from llmasos.distributed.router import ClusterRouter, ReplicaState, prefix_key
from llmasos.distributed.shares import exchange, ledger
from llmasos.errors import RequestTimeoutError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import (
    BackgroundJob,
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    PromptCount,
    ResidentModel,
    new_request_id,
)
from llmasos.models import ModelStoreInterface

logger = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_SECONDS = 5.0
"""How often the client re-reads the replicas and tells autoscalers its router queues."""
RAY_CALL_TIMEOUT = 10.0
"""The longest the client waits on one Ray control call (a head that died makes them hang)."""
GCS_RECONNECT_SECONDS = str(7 * 24 * 3600)
"""Ray ends a driver whose head stays unreachable for ``gcs_rpc_server_reconnect_timeout_s``
(60 s by default); the API server must outlive its head, so it waits a week instead."""


class ClusterMetrics:
    """The router's Prometheus metrics, on the server's registry (served at ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        model = ["model_name"]
        self.requests = Counter(
            "llmasos:cluster_requests",
            "Request attempts sent to a replica.",
            ["model_name", "replica"],
            registry=registry,
        )
        self.failovers = Counter(
            "llmasos:cluster_failovers",
            "Requests moved to another replica after theirs failed.",
            model,
            registry=registry,
        )
        self.waiting = Gauge(
            "llmasos:cluster_router_waiting",
            "Requests waiting in the router's fair queue for a replica slot.",
            model,
            registry=registry,
        )
        self.live_replicas = Gauge(
            "llmasos:cluster_live_replicas",
            "Replicas the router can use.",
            model,
            registry=registry,
        )


class ReplicaLost(Exception):
    """The replica (or its node) failed under a request; the reason, for the log."""


class ReplicaDrained(Exception):
    """The replica is draining (being scaled down) and refused the request before running
    it: send it to another one."""


def continuation(
    request: GenerateRequest, prompt: str, sent_text: str, sent_tokens: int, cap: int
) -> GenerateRequest:
    """The request that resumes ``request`` on another replica after ``sent_text``.

    The rendered prompt plus what the client already has becomes a raw prompt; the output
    allowance shrinks by the tokens already sent. A grammar-constrained reply cannot resume
    (the grammar's state is lost with the replica): `ClusterError`.
    """
    if request.sampling.structured is not None:
        raise ClusterError(
            "the replica serving this structured reply died mid-stream, and a grammar-"
            "constrained reply cannot resume elsewhere: retry the request"
        )
    limit = request.sampling.max_tokens
    if limit is None and cap > 0 and "max_tokens" not in request.explicit:
        limit = cap
    remaining = None if limit is None else max(1, limit - sent_tokens)
    return dataclasses.replace(
        request,
        prompt=prompt + sent_text,
        messages=None,
        tools=None,
        raw=True,
        system=None,
        sampling=request.sampling.with_changes(max_tokens=remaining),
        explicit=request.explicit | {"max_tokens"},
        request_id=new_request_id(),
    )


class ClusterEngineClient(EngineClientInterface):
    """The kernel as a cluster: deployed models on replicas, the rest in this process."""

    def __init__(
        self,
        settings: Settings,
        store: ModelStoreInterface,
        *,
        router: ClusterRouter | None = None,
        local: InProcessEngineClient | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.address = settings.cluster_address or "auto"
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", GCS_RECONNECT_SECONDS)
        self._owns_connection = connect(self.address)
        self.gcs_address: str = ray.get_runtime_context().gcs_address
        self.down: str | None = None
        """Why the cluster's models are unavailable (the head is gone); None when it is up."""
        self.router = router or ClusterRouter(max_queue=settings.max_queue)
        self.local = local or InProcessEngineClient(settings, store)
        self.metrics = ClusterMetrics(self.local.metrics_registry)
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self._refreshed = 0.0
        self._refresh_lock = asyncio.Lock()
        self._attempts: dict[str, tuple[ReplicaState, str]] = {}
        self.refresh_seconds = REFRESH_SECONDS
        self.server_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._watcher: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._ledger: Any = None

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.local.metrics_registry

    def is_ready(self) -> bool:
        return self.local.is_ready()

    async def warm_up(self, model: str | None = None) -> None:
        """Learn the deployed replicas; load ``model`` here only if it is not deployed."""
        await self.refresh(force=True)
        self._watch()
        if await self._deployed(model) is None:
            await self.local.warm_up(model)

    # --- replicas --------------------------------------------------------------------------

    def _watch(self) -> None:
        """Start the background loop that keeps the replica list fresh (once)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.check()
            except Exception:  # the next look may succeed; never end the loop
                logger.exception("cluster: refreshing the replicas failed")

    async def _ray(
        self, call: Callable[..., T], *args: Any, timeout: float | None = RAY_CALL_TIMEOUT
    ) -> T:
        """A blocking Ray call in a daemon thread of its own, given up after ``timeout``.

        Ray calls hang while the head is away, and a thread stuck in one must neither hold
        a pool's worker nor keep the process from exiting (a pool's threads are joined at
        exit), hence a daemon thread per call; the client makes a few calls per refresh."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():  # given up already
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            try:
                result, error = call(*args), None
            except BaseException as raised:  # carried to the awaiting task
                result, error = None, raised
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name="llmasos-ray", daemon=True).start()
        return await asyncio.wait_for(future, timeout)

    async def check(self) -> None:
        """One look at the cluster: is the head there, did it restart, which replicas live."""
        try:
            await asyncio.to_thread(check_reachable, self.gcs_address)
        except ClusterError:
            self._lost(f"the cluster head at {self.gcs_address} does not answer")
            return
        if self.down is None:
            try:
                await self.refresh(force=True)
            except ray.exceptions.AuthenticationError:  # WrongClusterID: a new head
                self._lost(f"the cluster head at {self.gcs_address} restarted")
            else:
                await self._report_queues()
                await self.exchange_shares()
                return
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    def _lost(self, reason: str) -> None:
        """The head is gone: every cluster model fails fast, named, until it is back."""
        if self.down is None:
            logger.warning("cluster: %s; its models are unavailable", reason)
        self.down = reason
        for model in list(self.router.replicas):
            self.router.set_replicas(model, [])
            self._count_live(model)

    async def _reconnect(self) -> None:
        """Connect to the head again and redeploy the recorded deployments it lost (a
        restarted head keeps no detached actor without GCS fault tolerance)."""
        try:  # no time limit: redeploying loads models; the next look retries a failure
            await self._ray(self._reconnect_now, timeout=None)
            await self.refresh(force=True)
        except Exception as error:  # the head is not ready yet: the next look tries again
            logger.warning("cluster: reconnecting to %s failed: %s", self.gcs_address, error)
            return
        logger.warning("cluster: reconnected to %s", self.gcs_address)
        self.down = None

    def _reconnect_now(self) -> None:
        ray.shutdown()
        connect(self.gcs_address)
        for model in recorded_deployments(self.settings):
            if alive_replicas(model):
                continue
            logger.warning("cluster: redeploying %s as recorded", model)
            try:
                redeploy(self.settings, self.store, model)
            except (ClusterError, ValueError) as error:  # another API server is on it
                logger.warning("cluster: redeploying %s failed: %s", model, error)

    def unavailable(self, model: str) -> ClusterError:
        return ClusterError(
            f"{model} is unavailable: {self.down}; its requests are served again once the "
            "head is back"
        )

    async def _report_queues(self) -> None:
        """Tell each autoscaled model's controller how many requests wait in our router."""
        for model in self.router.models():
            try:
                controller: Any = await self._ray(ray.get_actor, controller_name(model), NAMESPACE)
            except ValueError:  # a fixed-size deployment
                continue
            queue = self.router.queues.get(model)
            controller.report.remote(self.server_id, len(queue) if queue else 0)

    async def exchange_shares(self) -> None:
        """Send the router's fair-share charges to the cluster's ledger and adopt its totals,
        so a tenant's service through other API servers counts here too (`shares`)."""
        charges = self.router.take_charges()
        try:
            if self._ledger is None:
                self._ledger = await self._ray(ledger)
            totals = await self._ray(
                exchange, self._ledger, self.server_id, charges, RAY_CALL_TIMEOUT
            )
        except Exception as error:  # the head is away: keep the charges for the next look
            self.router.restore_charges(charges)
            self._ledger = None
            logger.warning("cluster: exchanging fair-share counters failed: %s", error)
            return
        self.router.merge_shares(totals)

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the cluster's replicas (at most every `REFRESH_SECONDS` unless forced)."""
        async with self._refresh_lock:
            if not force and time.monotonic() - self._refreshed < REFRESH_SECONDS:
                return
            reports = await self._ray(list_replicas)
            by_model: dict[str, list[dict[str, Any]]] = {}
            states: dict[str, list[ReplicaState]] = {}
            for report in reports:
                if report.get("state") != "ready":
                    continue
                by_model.setdefault(report["model"], []).append(report)
                handle = await self._ray(ray.get_actor, report["name"], NAMESPACE)
                states.setdefault(report["model"], []).append(
                    ReplicaState(
                        report["name"],
                        capacity=int(report.get("capacity", 8)),
                        node=str(report.get("node_id", "")),
                        handle=handle,
                    )
                )
            for model in set(self.router.replicas) | set(states):
                self.router.set_replicas(model, states.get(model, []))
                self._count_live(model)
            self.reports = by_model
            self._refreshed = time.monotonic()

    def _count_live(self, model: str) -> None:
        live = sum(1 for r in self.router.replicas.get(model, []) if r.healthy)
        self.metrics.live_replicas.labels(model).set(live)

    async def _deployed(self, model: str | None) -> str | None:
        """The canonical name of ``model`` if it is deployed on the cluster, else None.

        A model once seen deployed stays the cluster's: when its last replica is gone its
        requests fail with a clear error instead of quietly loading it on this machine."""
        name = self.store.resolve(model or self.settings.default_model).manifest.name
        if self.down is not None:
            if name in self.router.replicas or name in recorded_deployments(self.settings):
                raise self.unavailable(name)
            return None
        if name not in self.router.replicas:
            try:
                await self.refresh()
            except TimeoutError as error:
                raise ClusterError(
                    f"the cluster at {self.gcs_address} did not answer within "
                    f"{RAY_CALL_TIMEOUT:g} s"
                ) from error
        return name if name in self.router.replicas else None

    # --- generation ----------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        return self._generate(request)

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self._watch()
        model = await self._deployed(request.model)
        if model is None:
            async for output in self.local.generate(request):
                yield output
            return
        tenant = request.tenant or "anonymous"
        key = prefix_key(model, request)
        deadline = time.monotonic() + (request.timeout or self.settings.request_timeout)
        attempt = dataclasses.replace(request, model=model)
        tried: list[str] = []
        prompt: str | None = None
        sent_text, sent_tokens = "", 0
        resumed_at = 0
        """Tokens the client had when the current attempt started (0 on the first one)."""
        while True:
            self.metrics.waiting.labels(model).inc()
            try:
                replica = await self.router.acquire(model, tenant, key, exclude=tried)
            finally:
                self.metrics.waiting.labels(model).dec()
            if replica is None:
                if tried:
                    raise ClusterError(
                        f"the replica of {model} serving this request failed "
                        f"({', '.join(tried)}) and no other replica is available"
                    )
                raise ClusterError(
                    f"{model} has no live replica on the cluster: run `llmasos deploy {model}`"
                )
            self._attempts[request.request_id] = (replica, attempt.request_id)
            self.metrics.requests.labels(model, replica.replica_id).inc()
            stream = self._stream(replica, attempt, deadline)
            try:
                async for output in stream:
                    if prompt is None:
                        prompt = output.prompt
                    new_tokens = len(output.tokens)
                    self.router.charge(model, tenant, 0, new_tokens)
                    if output.finished:
                        # a continuation's prompt holds the text already sent: report the
                        # original prompt's size (re-tokenized, so within a token or two)
                        output.prompt_tokens = max(0, output.prompt_tokens - resumed_at)
                        output.completion_tokens += resumed_at
                        self.router.charge(model, tenant, output.prompt_tokens, 0)
                    sent_text += output.text
                    sent_tokens += new_tokens
                    output.request_id = request.request_id
                    output.prompt = output.prompt if not tried else None
                    yield output
                    if output.finished:
                        return
                raise ReplicaLost("the stream ended without a final delta")
            except ReplicaDrained:
                # scaled down under us before it ran anything: the same attempt, elsewhere
                self.router.mark_unhealthy(model, replica.replica_id)
                tried.append(replica.replica_id)
                attempt = dataclasses.replace(attempt, request_id=new_request_id())
                await self.refresh(force=True)
            except ReplicaLost as lost:
                logger.warning(
                    "replica %s of %s lost mid-request %s (%s): failing over",
                    replica.replica_id,
                    model,
                    request.request_id,
                    lost,
                )
                self.router.mark_unhealthy(model, replica.replica_id)
                self.metrics.failovers.labels(model).inc()
                self._count_live(model)
                tried.append(replica.replica_id)
                if prompt is not None:
                    original = dataclasses.replace(request, model=model)
                    cap = self.settings.default_max_tokens
                    attempt = continuation(original, prompt, sent_text, sent_tokens, cap)
                    resumed_at = sent_tokens
                else:
                    attempt = dataclasses.replace(attempt, request_id=new_request_id())
            finally:
                await stream.aclose()  # now, not at garbage collection: cancels on the replica
                self._attempts.pop(request.request_id, None)
                self.router.release(model, replica)

    async def _stream(
        self, replica: ReplicaState, request: GenerateRequest, deadline: float
    ) -> AsyncGenerator[GenerateOutput, None]:
        """One attempt on one replica; Ray failures become `ReplicaLost`."""
        handle: Any = replica.handle
        finished = False
        try:
            stream = handle.generate.options(num_returns="streaming").remote(request)
        except ray.exceptions.RayError as error:
            raise ReplicaLost(str(error).splitlines()[0]) from error
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestTimeoutError("the request timed out on the cluster")
                try:
                    ref = await asyncio.wait_for(stream.__anext__(), timeout=left)
                    item = await asyncio.wait_for(
                        ref, timeout=max(0.1, deadline - time.monotonic())
                    )
                except StopAsyncIteration:
                    return
                except TimeoutError as error:
                    raise RequestTimeoutError(
                        f"the request timed out on the cluster (replica {replica.replica_id})"
                    ) from error
                except ray.exceptions.RayError as error:
                    raise ReplicaLost(str(error).strip().splitlines()[0]) from error
                if isinstance(item, ReplicaError):
                    finished = True
                    raise item.error
                if isinstance(item, ReplicaDraining):
                    finished = True
                    raise ReplicaDrained(replica.replica_id)
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self._cancel(handle, stream, request.request_id)

    @staticmethod
    def _cancel(handle: Any, stream: Any, request_id: str) -> None:
        with contextlib.suppress(Exception):  # the replica is gone: nothing left to cancel
            handle.abort.remote(request_id)
            ray.cancel(stream)

    async def abort(self, request_id: str) -> None:
        attempt = self._attempts.get(request_id)
        if attempt is None:
            await self.local.abort(request_id)
            return
        replica, attempt_id = attempt
        handle: Any = replica.handle
        with contextlib.suppress(ray.exceptions.RayError):  # the replica is gone already
            await handle.abort.remote(attempt_id)

    # --- other system calls --------------------------------------------------------------

    async def _call(self, model: str, method: str, *args: Any) -> Any:
        """Call ``method`` on some live replica of ``model``; kernel errors re-raised."""
        for replica in self.router.replicas.get(model, []):
            if not replica.healthy:
                continue
            handle: Any = replica.handle
            try:
                result = await getattr(handle, method).remote(*args)
            except ray.exceptions.RayError:
                self.router.mark_unhealthy(model, replica.replica_id)
                continue
            if isinstance(result, ReplicaError):
                raise result.error
            return result
        raise ClusterError(f"{model} has no live replica on the cluster")

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        return await self.local.embed(model, texts)

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        name = await self._deployed(model)
        if name is None:
            return await self.local.tokenize(model, text)
        tokens: list[int] = await self._call(name, "tokenize", text)
        return tokens

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        name = await self._deployed(request.model)
        if name is None:
            return await self.local.count_prompt(request)
        count: PromptCount = await self._call(
            name, "count_prompt", dataclasses.replace(request, model=name)
        )
        return count

    async def run_job(self, request: JobRequest[T]) -> T:
        """Runs the job here, in the in-process kernel's lane of its kind: perception
        engines run where the request arrived, never on a replica. Its time is charged on
        this server's fair-share ledger (its local models and lanes), not on the cluster
        router's counters of the deployed models."""
        return await self.local.run_job(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        if await self._deployed(model) is None:
            await self.local.load(model, keep_alive)

    async def unload(self, model: str) -> bool:
        if await self._deployed(model) is not None:
            return False  # replicas stay until `llmasos deploy MODEL --replicas 0`
        return await self.local.unload(model)

    def background_jobs(self) -> list[BackgroundJob]:
        return self.local.background_jobs()

    def memory_budget(self) -> int | None:
        return self.local.memory_budget()

    def resident_models(self) -> list[ResidentModel]:
        models = self.local.resident_models()
        if self.down is not None:
            for name in sorted(self.router.replicas):
                models.append(
                    ResidentModel(
                        name=name,
                        digest="",
                        backend="cluster",
                        processor=f"unavailable: {self.down}",
                        size_bytes=0,
                        context_length=0,
                        expires_at=None,
                        running=0,
                        waiting=0,
                    )
                )
            return models
        for name, reports in sorted(self.reports.items()):
            first = reports[0]
            models.append(
                ResidentModel(
                    name=name,
                    digest=str(first.get("digest", "")),
                    backend="cluster",
                    processor=f"{len(reports)} replica(s)",
                    size_bytes=int(first.get("size_bytes", 0)),
                    context_length=int(first.get("context_length", 0)),
                    expires_at=None,
                    running=sum(int(r.get("running", 0)) for r in reports),
                    waiting=sum(int(r.get("waiting", 0)) for r in reports),
                )
            )
        return models

    async def close(self) -> None:
        for task in (self._watcher, self._reconnecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.local.close()
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()

"""Job lanes: the kernel's scheduler for work that is not a token step (`JobRequest`).

Beside the step loops of the resident models, the kernel keeps one `JobLane` per job kind
(``transcribe``, ``ocr``, ``speak`` ...), opened on first use. A lane runs at most
``workers`` jobs at once, each in a thread so the event loop never blocks; the others wait
in per-tenant queues (a tenant's own jobs by priority, then arrival). When a worker frees,
the next job goes to the backlogged tenant with the least service on the kernel's
`TenantShares` ledger, the very counters every model's fair policy orders by: a job's run
time is charged there at ``tokens_per_second`` (the ``job_tokens_per_second`` setting), so
a tenant's heavy OCR counts against its share of the models and its chat tokens count
against its place in the lanes. A tenant that becomes backlogged in a lane is lifted to the
least counter of the tenants already waiting there, so idle time banks no credit. A lane
whose waiting room holds ``max_waiting`` jobs refuses the next with `QueueFullError` (503
with ``Retry-After``).

A lane knows nothing of what its jobs do: the callable is opaque. Its queues are touched
only from the event loop its callers run on (one at a time: the server's; a thread submits
through ``asyncio.run_coroutine_threadsafe``, as knowledge-base ingestion does); only the
callables run in threads, and the ledger they are charged to has a lock of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from llmasos.errors import QueueFullError
from llmasos.kernel.interface import JobRequest
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.scheduler.shares import TenantShares

T = TypeVar("T")

RETRY_AFTER_SECONDS: Final = 2.0
"""What a refused caller is told to wait before trying again."""


@dataclass
class _Job:
    request: JobRequest[Any]
    order: int
    future: asyncio.Future[Any]

    @property
    def key(self) -> tuple[int, int]:
        return (self.request.priority, self.order)


@dataclass(frozen=True)
class LaneStats:
    """One lane at one moment (``/metrics`` publishes the same numbers)."""

    kind: str
    running: int
    waiting: int
    job_seconds: float
    """Seconds of work the lane has run, in total."""


class JobLane:
    """The fair queue and bounded workers of one job kind."""

    def __init__(
        self,
        kind: str,
        *,
        workers: int,
        max_waiting: int,
        tokens_per_second: float,
        shares: TenantShares,
        metrics: KernelMetrics,
    ) -> None:
        self.kind = kind
        self.workers = max(1, workers)
        self.max_waiting = max_waiting
        self.tokens_per_second = tokens_per_second
        self.shares = shares
        self.metrics = metrics
        self._waiting: dict[str, list[_Job]] = {}
        self._running = 0
        self._order = itertools.count()
        self._job_seconds = 0.0

    @property
    def num_waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def stats(self) -> LaneStats:
        return LaneStats(self.kind, self._running, self.num_waiting, self._job_seconds)

    async def run(self, request: JobRequest[T]) -> T:
        waiting = self.num_waiting
        if waiting >= self.max_waiting:
            self.metrics.lane_jobs.labels(self.kind, "rejected").inc()
            raise QueueFullError(
                f"{waiting} {self.kind} jobs are waiting (the lane's limit); try again shortly",
                retry_after=RETRY_AFTER_SECONDS,
            )
        tenant = request.tenant
        if not self._waiting.get(tenant):
            self.shares.lift(tenant, self._backlogged())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = _Job(request, next(self._order), future)
        queue = self._waiting.setdefault(tenant, [])
        queue.append(job)
        queue.sort(key=lambda j: j.key)
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            self._forget(job)
            raise

    def _backlogged(self) -> list[str]:
        return [tenant for tenant, queue in self._waiting.items() if queue]

    def _forget(self, job: _Job) -> None:
        """Take a job whose caller went away out of the waiting room (a running one stays)."""
        queue = self._waiting.get(job.request.tenant)
        if queue is not None and job in queue:
            queue.remove(job)
            self.metrics.lane_jobs.labels(self.kind, "cancelled").inc()
            self._publish()

    def _next(self) -> _Job | None:
        backlogged = self._backlogged()
        if not backlogged:
            return None
        tenant = min(backlogged, key=lambda t: (self.shares[t], self._waiting[t][0].order))
        queue = self._waiting[tenant]
        job = queue.pop(0)
        if not queue:
            del self._waiting[tenant]
        return job

    def _dispatch(self) -> None:
        while self._running < self.workers:
            job = self._next()
            if job is None:
                break
            if job.future.done():  # its caller was cancelled while it waited
                continue
            self._running += 1
            self._charge(job.request.tenant, job.request.cost_seconds)
            asyncio.get_running_loop().create_task(self._execute(job))
        self._publish()

    def _charge(self, tenant: str, seconds: float) -> None:
        if seconds:
            self.shares.charge(tenant, seconds * self.tokens_per_second)

    async def _execute(self, job: _Job) -> None:
        request = job.request
        started = time.perf_counter()
        outcome = "done"
        try:
            result = await asyncio.to_thread(request.work)
        except BaseException as error:  # handed to the caller, whatever it is
            outcome = "error"
            if not job.future.done():
                job.future.set_exception(error)
        else:
            if not job.future.done():
                job.future.set_result(result)
        finally:
            elapsed = time.perf_counter() - started
            self._job_seconds += elapsed
            self._charge(request.tenant, elapsed - request.cost_seconds)
            self.metrics.lane_job_seconds.labels(self.kind).inc(elapsed)
            self.metrics.lane_jobs.labels(self.kind, outcome).inc()
            self._running -= 1
            self._dispatch()

    def _publish(self) -> None:
        self.metrics.lane_running.labels(self.kind).set(self._running)
        self.metrics.lane_waiting.labels(self.kind).set(self.num_waiting)


class JobLanes:
    """Every lane of one kernel, opened per kind on first use, all with the same limits and
    the same fair-share ledger."""

    def __init__(
        self,
        *,
        workers: int,
        max_waiting: int,
        tokens_per_second: float,
        shares: TenantShares | None = None,
        metrics: KernelMetrics | None = None,
    ) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self.tokens_per_second = tokens_per_second
        self.shares = shares or TenantShares()
        self.metrics = metrics or KernelMetrics()
        self.lanes: dict[str, JobLane] = {}

    def lane(self, kind: str) -> JobLane:
        if kind not in self.lanes:
            self.lanes[kind] = JobLane(
                kind,
                workers=self.workers,
                max_waiting=self.max_waiting,
                tokens_per_second=self.tokens_per_second,
                shares=self.shares,
                metrics=self.metrics,
            )
        return self.lanes[kind]

    async def run(self, request: JobRequest[T]) -> T:
        return await self.lane(request.kind).run(request)

    def stats(self) -> list[LaneStats]:
        return [lane.stats() for lane in self.lanes.values()]

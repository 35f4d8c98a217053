"""Runs perception work (decoding, recognition, synthesis, OCR) fairly between tenants.

The kernel's scheduler batches token steps of resident language models and has no notion
of a job that is not one (docs/design/perception.md proposes the kernel-level extension).
Until then this queue gives CPU-bound perception jobs the kernel's guarantees in small:
a bounded number run at once (``workers``, in threads, so the event loop never blocks),
the rest wait in per-tenant queues, and the next job goes to the backlogged tenant that
has received the least service so far (seconds of work, a Virtual Token Counter over
time instead of tokens), with a newly backlogged tenant's counter lifted to the least
backlogged one so idle time banks no credit. A full queue refuses with `QueueFullError`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llmasos.errors import QueueFullError

T = TypeVar("T")


@dataclass
class _Job:
    tenant: str
    work: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass
class JobQueueStats:
    running: int
    waiting: int
    served_seconds: dict[str, float] = field(default_factory=dict)


class FairJobQueue:
    """``await queue.run(tenant, work)`` runs ``work()`` in a thread, fairly, and returns
    its result (or raises what it raised)."""

    def __init__(self, workers: int = 1, max_waiting: int = 64) -> None:
        self.workers = max(1, workers)
        self.max_waiting = max_waiting
        self._waiting: dict[str, deque[_Job]] = {}
        self._served: dict[str, float] = {}
        self._running = 0

    def stats(self) -> JobQueueStats:
        waiting = sum(len(q) for q in self._waiting.values())
        return JobQueueStats(self._running, waiting, dict(self._served))

    async def run(self, tenant: str, work: Callable[[], T]) -> T:
        waiting = sum(len(q) for q in self._waiting.values())
        if waiting >= self.max_waiting:
            raise QueueFullError(
                f"{waiting} perception jobs are waiting; try again shortly", retry_after=2
            )
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if tenant not in self._waiting or not self._waiting[tenant]:
            backlogged = [self._served.get(t, 0.0) for t, q in self._waiting.items() if q]
            floor = min(backlogged) if backlogged else 0.0
            self._served[tenant] = max(self._served.get(tenant, 0.0), floor)
        self._waiting.setdefault(tenant, deque()).append(_Job(tenant, work, future))
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            self._forget(tenant, future)
            raise

    def _forget(self, tenant: str, future: asyncio.Future[Any]) -> None:
        queue = self._waiting.get(tenant)
        if queue:
            for job in list(queue):
                if job.future is future:
                    queue.remove(job)

    def _next(self) -> _Job | None:
        backlogged = [t for t, q in self._waiting.items() if q]
        if not backlogged:
            return None
        tenant = min(backlogged, key=lambda t: self._served.get(t, 0.0))
        return self._waiting[tenant].popleft()

    def _dispatch(self) -> None:
        while self._running < self.workers:
            job = self._next()
            if job is None:
                return
            if job.future.done():  # cancelled while waiting
                continue
            self._running += 1
            asyncio.get_running_loop().create_task(self._execute(job))

    async def _execute(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(job.work)
        except BaseException as error:  # handed to the caller, whatever it is
            if not job.future.done():
                job.future.set_exception(error)
        else:
            if not job.future.done():
                job.future.set_result(result)
        finally:
            elapsed = time.perf_counter() - started
            self._served[job.tenant] = self._served.get(job.tenant, 0.0) + elapsed
            self._running -= 1
            self._dispatch()

"""The fair job queue: bounded concurrency, least-served tenant first, bounded waiting."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llmasos.errors import QueueFullError
from llmasos.perception.jobs import FairJobQueue


def test_a_light_tenant_is_served_before_a_heavy_tenants_backlog() -> None:
    order: list[str] = []

    def job(name: str) -> str:
        time.sleep(0.02)
        order.append(name)
        return name

    async def scenario() -> list[str]:
        queue = FairJobQueue(workers=1)
        heavy = [
            asyncio.create_task(queue.run("heavy", lambda n=n: job(f"heavy{n}"))) for n in range(5)
        ]
        await asyncio.sleep(0.005)  # the heavy tenant's backlog is queued first
        light = asyncio.create_task(queue.run("light", lambda: job("light")))
        results = await asyncio.gather(*heavy, light)
        return list(results)

    results = asyncio.run(scenario())
    assert results[-1] == "light"
    assert order.index("light") <= 2  # after the running job and at most one more
    assert sorted(order) == sorted(results)


def test_at_most_workers_run_at_once_and_errors_reach_the_caller() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    def broken() -> None:
        raise ValueError("engine failed")

    async def scenario() -> None:
        queue = FairJobQueue(workers=2)
        await asyncio.gather(*(queue.run(f"t{n % 3}", job) for n in range(8)))
        with pytest.raises(ValueError, match="engine failed"):
            await queue.run("t0", broken)
        assert queue.stats().running == 0 and queue.stats().waiting == 0

    asyncio.run(scenario())
    assert peak == 2


def test_a_full_queue_refuses_with_503() -> None:
    async def scenario() -> None:
        queue = FairJobQueue(workers=1, max_waiting=2)
        gate = threading.Event()
        tasks = [asyncio.create_task(queue.run("a", gate.wait)) for _ in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError) as caught:
            await queue.run("b", gate.wait)
        assert caught.value.status_code == 503
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())

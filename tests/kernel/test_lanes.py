"""Job lanes: bounded workers, least-served tenant first on the kernel's fair-share ledger,
503 when full, cancellation, metrics, and job time counting against a tenant on the models.

Jobs block on `threading.Event`s the test releases, so every ordering is decided by the
lane, not by how long anything takes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmasos.config import load_settings
from llmasos.errors import QueueFullError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import GenerateRequest, JobRequest
from llmasos.kernel.lanes import JobLanes
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.request import Request
from llmasos.kernel.scheduler.policies import FairPolicy
from llmasos.kernel.scheduler.shares import TenantShares
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.types import SamplingParams


async def until(condition: Callable[[], bool]) -> None:
    """Wait (on the event loop) until ``condition`` holds; fail if it never does."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the condition never held")


class Gate:
    """A job that waits until the test opens it, recording the order jobs started in."""

    def __init__(self, started: list[str]) -> None:
        self.started = started
        self.event = threading.Event()

    def job(self, name: str) -> Callable[[], str]:
        def work() -> str:
            self.started.append(name)
            assert self.event.wait(30), "the test never opened the gate"
            return name

        return work


def lanes(**limits: Any) -> JobLanes:
    values: dict[str, Any] = {"workers": 1, "max_waiting": 64, "tokens_per_second": 1000.0}
    values.update(limits)
    return JobLanes(**values)


def sample(metrics: KernelMetrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_light_tenant_goes_before_a_heavy_tenants_backlog() -> None:
    started: list[str] = []
    gate = Gate(started)

    async def main() -> list[str]:
        kernel = lanes()
        lane = kernel.lane("ocr")
        jobs = [
            asyncio.create_task(kernel.run(JobRequest("ocr", gate.job(f"heavy{n}"), "heavy")))
            for n in range(4)
        ]
        await until(lambda: lane.stats().running == 1 and lane.stats().waiting == 3)
        jobs.append(asyncio.create_task(kernel.run(JobRequest("ocr", gate.job("light"), "light"))))
        await until(lambda: lane.stats().waiting == 4)
        gate.event.set()
        return list(await asyncio.gather(*jobs))

    results = asyncio.run(main())
    assert results == ["heavy0", "heavy1", "heavy2", "heavy3", "light"]
    # heavy0 was running; once it was charged, the light tenant had the least service
    assert started[:2] == ["heavy0", "light"]


def test_service_on_the_shared_ledger_orders_the_lane() -> None:
    """Tokens charged elsewhere in the kernel (a model's scheduler) while two tenants wait
    put the charged tenant behind, though it came first."""
    started: list[str] = []
    gate = Gate(started)

    async def main() -> None:
        kernel = lanes()
        lane = kernel.lane("transcribe")
        blocker = asyncio.create_task(
            kernel.run(JobRequest("transcribe", gate.job("blocker"), "other"))
        )
        await until(lambda: lane.stats().running == 1)
        chatty = asyncio.create_task(
            kernel.run(JobRequest("transcribe", gate.job("chatty"), "chatty"))
        )
        quiet = asyncio.create_task(
            kernel.run(JobRequest("transcribe", gate.job("quiet"), "quiet"))
        )
        await until(lambda: lane.stats().waiting == 2)
        kernel.shares.charge("chatty", 10_000.0)  # e.g. its chat tokens on a model
        gate.event.set()
        await asyncio.gather(blocker, chatty, quiet)

    asyncio.run(main())
    assert started == ["blocker", "quiet", "chatty"]


def test_a_tenants_own_jobs_run_by_priority_then_arrival() -> None:
    started: list[str] = []
    gate = Gate(started)

    async def main() -> None:
        kernel = lanes()
        lane = kernel.lane("speak")
        first = asyncio.create_task(kernel.run(JobRequest("speak", gate.job("first"), "t")))
        await until(lambda: lane.stats().running == 1)
        tasks = [
            asyncio.create_task(kernel.run(JobRequest("speak", gate.job(name), "t", priority)))
            for name, priority in (("late", 5), ("urgent", 0), ("later", 5))
        ]
        await until(lambda: lane.stats().waiting == 3)
        gate.event.set()
        await asyncio.gather(first, *tasks)

    asyncio.run(main())
    assert started == ["first", "urgent", "late", "later"]


def test_at_most_workers_run_at_once_and_errors_reach_the_caller() -> None:
    started: list[str] = []
    gate = Gate(started)

    def fails() -> None:
        raise ValueError("the engine broke")

    async def main() -> None:
        kernel = lanes(workers=2)
        lane = kernel.lane("ocr")
        tasks = [
            asyncio.create_task(kernel.run(JobRequest("ocr", gate.job(f"j{n}"), f"t{n}")))
            for n in range(5)
        ]
        await until(lambda: lane.stats().running == 2)
        assert lane.stats().waiting == 3
        assert len(started) == 2
        gate.event.set()
        assert sorted(await asyncio.gather(*tasks)) == [f"j{n}" for n in range(5)]
        with pytest.raises(ValueError, match="the engine broke"):
            await kernel.run(JobRequest("ocr", fails, "t0"))
        assert lane.stats().running == 0

    asyncio.run(main())


def test_a_full_lane_refuses_with_retry_after_and_other_lanes_still_run() -> None:
    gate = Gate([])

    async def main() -> None:
        kernel = lanes(max_waiting=2)
        lane = kernel.lane("ocr")
        tasks = [
            asyncio.create_task(kernel.run(JobRequest("ocr", gate.job(f"j{n}"), "t")))
            for n in range(3)
        ]
        await until(lambda: lane.stats().running == 1 and lane.stats().waiting == 2)
        with pytest.raises(QueueFullError) as refused:
            await kernel.run(JobRequest("ocr", gate.job("one too many"), "t"))
        assert refused.value.status_code == 503
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        assert "ocr jobs are waiting" in refused.value.message
        assert (
            sample(
                kernel.metrics,
                "llmasos:job_lane_jobs_total",
                {"kind": "ocr", "outcome": "rejected"},
            )
            == 1
        )
        assert await kernel.run(JobRequest("speak", lambda: "spoken", "t")) == "spoken"
        gate.event.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_a_waiting_job_whose_caller_goes_away_never_runs() -> None:
    started: list[str] = []
    gate = Gate(started)

    async def main() -> None:
        kernel = lanes()
        lane = kernel.lane("transcribe")
        running = asyncio.create_task(kernel.run(JobRequest("transcribe", gate.job("a"), "t")))
        await until(lambda: lane.stats().running == 1)
        gone = asyncio.create_task(kernel.run(JobRequest("transcribe", gate.job("gone"), "u")))
        await until(lambda: lane.stats().waiting == 1)
        gone.cancel()  # the HTTP client disconnected
        await asyncio.gather(gone, return_exceptions=True)
        assert lane.stats().waiting == 0
        gate.event.set()
        assert await running == "a"
        assert await kernel.run(JobRequest("transcribe", gate.job("b"), "u")) == "b"
        labels = {"kind": "transcribe", "outcome": "cancelled"}
        assert sample(kernel.metrics, "llmasos:job_lane_jobs_total", labels) == 1

    asyncio.run(main())
    assert started == ["a", "b"]


def test_metrics_show_each_lanes_depth_running_jobs_and_job_seconds() -> None:
    gate = Gate([])

    async def main() -> None:
        kernel = lanes()
        lane = kernel.lane("ocr")
        metrics = kernel.metrics
        tasks = [
            asyncio.create_task(kernel.run(JobRequest("ocr", gate.job(f"j{n}"), "t")))
            for n in range(3)
        ]
        await until(lambda: lane.stats().running == 1 and lane.stats().waiting == 2)
        assert sample(metrics, "llmasos:job_lane_running", {"kind": "ocr"}) == 1
        assert sample(metrics, "llmasos:job_lane_waiting", {"kind": "ocr"}) == 2
        gate.event.set()
        await asyncio.gather(*tasks)
        assert sample(metrics, "llmasos:job_lane_running", {"kind": "ocr"}) == 0
        assert sample(metrics, "llmasos:job_lane_waiting", {"kind": "ocr"}) == 0
        seconds = sample(metrics, "llmasos:job_seconds_total", {"kind": "ocr"})
        assert seconds > 0 and seconds == pytest.approx(lane.stats().job_seconds)
        done = {"kind": "ocr", "outcome": "done"}
        assert sample(metrics, "llmasos:job_lane_jobs_total", done) == 3

    asyncio.run(main())


def request(tenant: str, arrival: float) -> Request:
    return Request(
        request_id=f"{tenant}-{arrival}",
        seq_id=int(arrival),
        prompt_tokens=[1, 2, 3],
        sampling=SamplingParams(),
        max_tokens=4,
        tenant=tenant,
        arrival_time=arrival,
    )


def test_job_time_counts_against_a_tenant_on_the_models_fair_policy() -> None:
    """The lane and a model's `FairPolicy` share one ledger: a job run while two tenants wait
    for the model puts its tenant behind, though its request came first."""
    shares = TenantShares()
    policy = FairPolicy(shares=shares)
    kernel = JobLanes(workers=1, max_waiting=4, tokens_per_second=1e6, shares=shares)
    scanner, chatter = request("scanner", 1), request("chatter", 2)
    policy.push(scanner)
    policy.push(chatter)
    assert policy.peek() is scanner  # equal service: arrival decides
    asyncio.run(kernel.run(JobRequest("ocr", lambda: "read", "scanner")))
    assert shares["scanner"] > 0 == shares["chatter"]
    assert policy.peek() is chatter


def test_an_estimate_is_charged_at_start_and_corrected_to_the_measured_time() -> None:
    gate = Gate([])

    async def main() -> None:
        kernel = lanes(tokens_per_second=10.0)
        lane = kernel.lane("ocr")
        job = asyncio.create_task(
            kernel.run(JobRequest("ocr", gate.job("long"), "t", cost_seconds=1000.0))
        )
        await until(lambda: lane.stats().running == 1)
        assert kernel.shares["t"] == pytest.approx(10_000.0)
        gate.event.set()
        await job
        assert kernel.shares["t"] == pytest.approx(lane.stats().job_seconds * 10.0)

    asyncio.run(main())


@pytest.mark.model
@pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)
def test_a_tenant_that_spent_job_time_is_scheduled_after_one_that_did_not(
    tmp_path: Path,
) -> None:
    """The real kernel and embedded model, one sequence slot: while a third tenant's long
    reply holds the slot, ``scanner`` then ``chatter`` ask for a reply. With equal service
    ``scanner`` would go first (it came first); an OCR job of ``scanner``'s, run while both
    wait, puts it behind ``chatter`` on the model's token scheduler."""
    settings = load_settings(
        home=tmp_path / "home",
        threads=2,
        context_length=1024,
        max_batch_size=1,
        job_tokens_per_second=1e6,
    )

    def ask(tenant: str, max_tokens: int, ignore_eos: bool = False) -> GenerateRequest:
        return GenerateRequest(
            model="smollm2",
            messages=[{"role": "user", "content": "Name three colours."}],
            sampling=SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=ignore_eos),
            explicit=frozenset({"temperature", "max_tokens"}),
            tenant=tenant,
        )

    async def first_token_order(with_job: bool) -> list[str]:
        client = InProcessEngineClient(settings)
        order: list[str] = []

        async def reply(tenant: str) -> None:
            async for output in client.generate(ask(tenant, 4)):
                if (output.text or output.finished) and tenant not in order:
                    order.append(tenant)

        try:
            holder = client.generate(ask("holder", 900, ignore_eos=True))
            await holder.__anext__()  # it runs and holds the only slot
            engine = client.models.loaded["smollm2:135m"].engine
            assert engine is not None
            scanner = asyncio.create_task(reply("scanner"))
            await until(lambda: engine.scheduler.num_waiting == 1)  # in the policy's queue
            chatter = asyncio.create_task(reply("chatter"))
            await until(lambda: engine.scheduler.num_waiting == 2)
            if with_job:
                read = await client.run_job(JobRequest("ocr", lambda: "text", "scanner"))
                assert read == "text"
            await holder.aclose()  # the slot frees
            await asyncio.gather(scanner, chatter)
        finally:
            await client.close()
        return order

    assert asyncio.run(first_token_order(with_job=False)) == ["scanner", "chatter"]
    assert asyncio.run(first_token_order(with_job=True)) == ["chatter", "scanner"]

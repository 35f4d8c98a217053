"""Scheduler logic on the fake backend: batching, chunked prefill, fairness, preemption."""

from __future__ import annotations

import itertools

import pytest

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.kernel.engine import BackendKVCache
from llmasos.kernel.request import Request, RequestStatus
from llmasos.kernel.scheduler.policies import FairPolicy, make_policy
from llmasos.kernel.scheduler.scheduler import Scheduler
from llmasos.plugins import get_registry
from llmasos.types import SamplingParams
from tests.kernel.fake_backend import FakeBackend

_ids = itertools.count(1)


def make_request(
    prompt_len: int = 8,
    *,
    max_tokens: int = 8,
    tenant: str = "anonymous",
    priority: int = 0,
    arrival: float | None = None,
) -> Request:
    seq_id = next(_ids)
    request = Request(
        request_id=f"r{seq_id}",
        seq_id=seq_id,
        prompt_tokens=[1 + (seq_id + i) % 20 for i in range(prompt_len)],
        sampling=SamplingParams(temperature=0),
        max_tokens=max_tokens,
        tenant=tenant,
        priority=priority,
    )
    if arrival is not None:
        request.arrival_time = arrival
    return request


def make_scheduler(
    policy: str = "fcfs",
    *,
    max_sequences: int = 4,
    budget: int = 64,
    prefill_while_decoding: int | None = None,
    kv_tokens: int | None = None,
) -> tuple[Scheduler, FakeBackend]:
    get_registry().register_backend("fake", FakeBackend, formats=("fake",))
    backend_cls = get_registry().backend("fake")
    spec = LoadSpec(
        path=__import__("pathlib").Path("."),
        format="fake",
        context_length=1024,
        max_sequences=max_sequences,
        kv_capacity_tokens=kv_tokens,
    )
    backend = backend_cls.load(spec)
    assert isinstance(backend, FakeBackend)
    scheduler = Scheduler(
        BackendKVCache(backend),
        make_policy(policy),
        max_batch_tokens=budget,
        max_prefill_while_decoding=prefill_while_decoding,
    )
    return scheduler, backend


def step(scheduler: Scheduler, backend: FakeBackend) -> list[Request]:
    """One engine step without the thread: schedule, execute, update, finish by length."""
    output = scheduler.schedule()
    work = [
        SequenceWork(
            c.request.seq_id,
            c.request.all_tokens[
                c.request.num_computed_tokens : c.request.num_computed_tokens + c.num_tokens
            ],
            c.sample,
        )
        for c in output.chunks
    ]
    sampled = backend.execute(work)
    scheduler.update(output, {s.seq_id: s.token for s in sampled})
    finished = []
    for chunk in output.chunks:
        request = chunk.request
        if len(request.output_tokens) >= request.max_tokens and not request.is_finished:
            scheduler.finish_request(request, RequestStatus.FINISHED_LENGTH)
            finished.append(request)
    return finished


def run_to_completion(scheduler: Scheduler, backend: FakeBackend, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not scheduler.has_unfinished():
            return
        step(scheduler, backend)
    raise AssertionError("scheduler did not drain")


def test_new_request_joins_running_batch_next_step() -> None:
    scheduler, backend = make_scheduler()
    first = make_request()
    scheduler.add_request(first)
    step(scheduler, backend)
    step(scheduler, backend)
    second = make_request()
    scheduler.add_request(second)
    output = scheduler.schedule()
    scheduled = {c.request.request_id for c in output.chunks}
    assert scheduled == {first.request_id, second.request_id}
    assert second in output.admitted


def test_long_prompt_is_chunked_and_decodes_keep_running() -> None:
    scheduler, backend = make_scheduler(budget=32)
    short = make_request(4, max_tokens=50)
    scheduler.add_request(short)
    step(scheduler, backend)
    long = make_request(200, max_tokens=4)
    scheduler.add_request(long)
    chunk_sizes = []
    while len(long.output_tokens) == 0:
        output = scheduler.schedule()
        assert output.num_scheduled_tokens <= 32
        by_id = {c.request.request_id: c for c in output.chunks}
        assert by_id[short.request_id].num_tokens == 1  # the decode is never stalled
        chunk_sizes.append(by_id[long.request_id].num_tokens)
        work = [
            SequenceWork(
                c.request.seq_id,
                c.request.all_tokens[
                    c.request.num_computed_tokens : c.request.num_computed_tokens + c.num_tokens
                ],
                c.sample,
            )
            for c in output.chunks
        ]
        sampled = backend.execute(work)
        scheduler.update(output, {s.seq_id: s.token for s in sampled})
    assert sum(chunk_sizes) == 200
    assert max(chunk_sizes) == 31


def test_prefill_is_capped_while_others_decode() -> None:
    """With requests decoding, prompt chunks get at most max_prefill_while_decoding tokens;
    with none decoding, a prompt gets the whole step budget."""
    scheduler, backend = make_scheduler(budget=64, prefill_while_decoding=16)
    first = make_request(100, max_tokens=30)
    scheduler.add_request(first)
    output = scheduler.schedule()
    assert [c.num_tokens for c in output.chunks] == [64]  # nothing decodes yet
    scheduler.update(output, {})
    step(scheduler, backend)  # the rest of the prompt; first now decodes
    second, third = make_request(40), make_request(40)
    scheduler.add_request(second)
    scheduler.add_request(third)
    output = scheduler.schedule()
    sizes = {c.request.request_id: c.num_tokens for c in output.chunks}
    assert sizes[first.request_id] == 1
    assert sum(n for rid, n in sizes.items() if rid != first.request_id) == 16


def test_batched_outputs_equal_sequential_outputs() -> None:
    prompts = [make_request(n, max_tokens=12) for n in (5, 17, 40)]
    scheduler, backend = make_scheduler(max_sequences=3, budget=16)
    for request in prompts:
        scheduler.add_request(request)
    run_to_completion(scheduler, backend)
    for request in prompts:
        alone = make_request(0, max_tokens=12)
        alone.prompt_tokens = list(request.prompt_tokens)
        s2, b2 = make_scheduler(max_sequences=1, budget=512)
        s2.add_request(alone)
        run_to_completion(s2, b2)
        assert alone.output_tokens == request.output_tokens


def test_fcfs_makes_late_tenant_wait_behind_flood() -> None:
    scheduler, backend = make_scheduler("fcfs", max_sequences=4)
    flood = [make_request(8, max_tokens=30, tenant="A", arrival=i) for i in range(8)]
    for request in flood:
        scheduler.add_request(request)
    step(scheduler, backend)
    late = make_request(4, max_tokens=2, tenant="B", arrival=100)
    scheduler.add_request(late)
    steps = 0
    while not late.output_tokens:
        step(scheduler, backend)
        steps += 1
    assert steps > 25  # waited for a slot from A's first wave


def test_fair_share_admits_late_tenant_at_once() -> None:
    scheduler, backend = make_scheduler("fair", max_sequences=4)
    flood = [make_request(8, max_tokens=30, tenant="A", arrival=i) for i in range(8)]
    for request in flood:
        scheduler.add_request(request)
    for _ in range(3):
        step(scheduler, backend)
    late = make_request(4, max_tokens=2, tenant="B", arrival=100)
    scheduler.add_request(late)
    output = scheduler.schedule()
    assert late in output.admitted
    assert len(output.preempted) == 1 and output.preempted[0].tenant == "A"


def test_preempted_request_resumes_without_losing_tokens() -> None:
    scheduler, backend = make_scheduler("fair", max_sequences=2)
    a1 = make_request(8, max_tokens=20, tenant="A", arrival=0)
    a2 = make_request(8, max_tokens=20, tenant="A", arrival=1)
    for request in (a1, a2):
        scheduler.add_request(request)
    for _ in range(5):
        step(scheduler, backend)
    generated = list(a2.output_tokens)
    b = make_request(4, max_tokens=3, tenant="B", arrival=2)
    scheduler.add_request(b)
    output = scheduler.schedule()
    assert output.preempted == [a2]
    assert a2.status == RequestStatus.PREEMPTED and a2.output_tokens == generated
    run_to_completion(scheduler, backend)
    alone = make_request(0, max_tokens=20)
    alone.prompt_tokens = list(a2.prompt_tokens)
    s2, b2 = make_scheduler(max_sequences=1)
    s2.add_request(alone)
    run_to_completion(s2, b2)
    assert a2.output_tokens == alone.output_tokens


def test_priority_preempts_worse_priority() -> None:
    scheduler, backend = make_scheduler("priority", max_sequences=2)
    batch = [make_request(8, max_tokens=40, priority=10, arrival=i) for i in range(2)]
    for request in batch:
        scheduler.add_request(request)
    step(scheduler, backend)
    urgent = make_request(4, max_tokens=2, priority=0, arrival=5)
    scheduler.add_request(urgent)
    output = scheduler.schedule()
    assert urgent in output.admitted
    assert output.preempted and output.preempted[0].priority == 10


def test_priority_does_not_preempt_equal_priority() -> None:
    scheduler, backend = make_scheduler("priority", max_sequences=1)
    scheduler.add_request(make_request(8, max_tokens=40, arrival=0))
    step(scheduler, backend)
    late = make_request(4, max_tokens=2, arrival=5)
    scheduler.add_request(late)
    assert late not in scheduler.schedule().admitted


def test_memory_pressure_preempts_and_everything_completes() -> None:
    scheduler, backend = make_scheduler("fcfs", max_sequences=4, budget=64, kv_tokens=120)
    requests = [make_request(20, max_tokens=30, arrival=i) for i in range(4)]
    for request in requests:
        scheduler.add_request(request)
    run_to_completion(scheduler, backend)
    assert scheduler.num_preemptions > 0
    assert all(len(r.output_tokens) == 30 for r in requests)
    assert backend.kv_used_tokens == 0


def test_vtc_lifts_a_returning_tenant_to_the_backlogged_minimum() -> None:
    policy = FairPolicy()
    a = make_request(tenant="A")
    policy.push(a)
    policy.charge(a, 1000, 0)
    b = make_request(tenant="B")
    policy.push(b)
    assert policy.counters["B"] == pytest.approx(1000)
    policy.charge(a, 0, 10)
    assert policy.peek() is b


def test_vtc_weights_scale_service() -> None:
    policy = FairPolicy(weights={"gold": 2.0})
    gold, free = make_request(tenant="gold"), make_request(tenant="free")
    policy.charge(gold, 100, 0)
    policy.charge(free, 100, 0)
    assert policy.counters["gold"] == pytest.approx(50)
    assert policy.counters["free"] == pytest.approx(100)

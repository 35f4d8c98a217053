"""The cluster router's logic with fake replicas: prefix affinity, the power of two choices,
and one fair queue (Virtual Token Counter) per model across all replicas. No Ray."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from llmasos.distributed.router import (
    ClusterRouter,
    FairQueue,
    Placement,
    ReplicaState,
    prefix_key,
)
from llmasos.distributed.shares import ShareTotals
from llmasos.errors import QueueFullError
from llmasos.kernel.interface import GenerateRequest


def replicas(count: int, capacity: int = 4) -> list[ReplicaState]:
    return [ReplicaState(f"replica-{i}", capacity=capacity) for i in range(count)]


def chat(system: str, *turns: str) -> GenerateRequest:
    messages = [{"role": "system", "content": system}]
    for index, turn in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": turn})
    return GenerateRequest(messages=messages)


def test_a_conversation_keeps_its_key_as_it_grows() -> None:
    first = prefix_key("m", chat("be brief", "hello"))
    later = prefix_key("m", chat("be brief", "hello", "hi!", "and now?"))
    other = prefix_key("m", chat("be brief", "another conversation"))
    assert first == later
    assert first != other
    assert prefix_key("m", chat("be brief", "hello")) != prefix_key("n", chat("be brief", "hello"))


def test_affinity_sends_a_key_to_one_replica_and_keys_spread() -> None:
    placement = Placement(rng=random.Random(1))
    pool = replicas(8)
    owners = Counter()
    for key in range(400):
        chosen = {placement.choose(pool, key).replica_id for _ in range(5)}  # type: ignore[union-attr]
        assert len(chosen) == 1  # idle replicas: always the owner
        owners[chosen.pop()] += 1
    assert len(owners) == 8
    assert min(owners.values()) > 400 / 8 / 3  # rendezvous hashing spreads keys


def test_a_replica_leaving_moves_only_its_own_keys() -> None:
    placement = Placement()
    pool = replicas(6)
    before = {key: placement.preferred(pool, key) for key in range(300)}
    pool[2].healthy = False
    for key, owner in before.items():
        after = placement.preferred(pool, key)
        assert owner is not None and after is not None
        if owner.replica_id != "replica-2":
            assert after is owner
        else:
            assert after is not owner


def test_a_busy_owner_yields_to_the_shorter_queue() -> None:
    placement = Placement(affinity_slack=2, rng=random.Random(3))
    pool = replicas(2, capacity=10)
    owner = placement.preferred(pool, 42)
    assert owner is not None
    owner.in_flight = 2
    assert placement.choose(pool, 42) is owner  # within the slack
    owner.in_flight = 3
    assert placement.choose(pool, 42) is not owner  # 3 deeper than an idle replica
    owner.in_flight = 10
    assert placement.choose(pool, 42) is not owner  # full


def test_two_choices_picks_the_shallower_queue_and_none_when_full() -> None:
    placement = Placement(rng=random.Random(7))
    pool = replicas(2, capacity=3)
    pool[0].in_flight = 2
    assert all(placement.choose(pool) is pool[1] for _ in range(20))
    for replica in pool:
        replica.in_flight = 3
    assert placement.choose(pool) is None


def test_fair_queue_serves_the_least_served_tenant_first() -> None:
    queue: FairQueue[str] = FairQueue()
    for index in range(3):
        queue.push("heavy", f"h{index}")
    queue.push("light", "l0")
    queue.charge("heavy", prompt_tokens=100, output_tokens=50)
    assert queue.pop() == ("light", "l0")
    assert [queue.pop() for _ in range(3)] == [("heavy", f"h{i}") for i in range(3)]
    assert queue.pop() is None and len(queue) == 0


def test_fair_queue_lifts_a_returning_tenant_so_idling_banks_no_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("busy", "b0")
    queue.charge("busy", output_tokens=1000)
    queue.push("idle", "i0")  # never served: lifted to the backlogged minimum
    assert queue.counters["idle"] == queue.counters["busy"]


def test_fair_queue_honours_weights() -> None:
    queue: FairQueue[int] = FairQueue(weights={"gold": 2.0})
    served = Counter()
    for index in range(300):
        queue.push("gold", index)
        queue.push("free", index)
    for _ in range(300):
        head = queue.pop()
        assert head is not None
        served[head[0]] += 1
        queue.charge(head[0], output_tokens=10)
    assert served["gold"] == pytest.approx(2 * served["free"], abs=2)


def test_router_enforces_fairness_across_replicas() -> None:
    """Two replicas, one counter per tenant: a flooding tenant cannot starve another,
    whichever replica frees a slot."""

    async def scenario() -> list[str]:
        router = ClusterRouter(rng=random.Random(0))
        router.set_replicas("m", replicas(2, capacity=1))
        order: list[str] = []

        async def one(tenant: str) -> None:
            replica = await router.acquire("m", tenant, None)
            assert replica is not None
            order.append(tenant)
            await asyncio.sleep(0)
            router.charge("m", tenant, 10, 20)
            router.release("m", replica)

        await asyncio.gather(*(one("flood") for _ in range(8)), *(one("small") for _ in range(3)))
        return order

    order = asyncio.run(scenario())
    assert len(order) == 11
    # the small tenant's three requests are served within the first six, not after the flood
    assert [i for i, t in enumerate(order) if t == "small"][-1] < 6


def test_router_is_work_conserving_and_bounded() -> None:
    async def scenario() -> None:
        router = ClusterRouter(max_queue=1)
        router.set_replicas("m", replicas(1, capacity=1))
        first = await router.acquire("m", "a")
        assert first is not None  # a free slot: no waiting
        waiting = asyncio.ensure_future(router.acquire("m", "a"))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await router.acquire("m", "b")
        router.release("m", first)
        assert await waiting is first

    asyncio.run(scenario())


def test_router_excludes_failed_replicas_and_reports_none_left() -> None:
    async def scenario() -> None:
        router = ClusterRouter()
        router.set_replicas("m", replicas(2))
        first = await router.acquire("m", "t", 5)
        assert first is not None
        router.mark_unhealthy("m", first.replica_id)
        second = await router.acquire("m", "t", 5, exclude=[first.replica_id])
        assert second is not None and second is not first
        assert await router.acquire("m", "t", 5, exclude=[second.replica_id]) is None
        assert await router.acquire("other", "t") is None

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    async def scenario() -> None:
        router = ClusterRouter()
        router.set_replicas("m", replicas(1, capacity=1))
        held = await router.acquire("m", "t")
        assert held is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.acquire("m", "t"), timeout=0.01)
        assert len(router.queue("m")) == 0
        router.release("m", held)
        assert held.in_flight == 0

    asyncio.run(scenario())


def test_a_continuation_resumes_after_the_text_sent() -> None:
    pytest.importorskip("ray")
    from llmasos.distributed.client import continuation
    from llmasos.errors import ClusterError
    from llmasos.types import SamplingParams, StructuredOutput

    original = GenerateRequest(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        sampling=SamplingParams(max_tokens=50, temperature=0.0),
    )
    resumed = continuation(original, "<prompt>", "Hello, wor", 4, cap=2048)
    assert resumed.raw and resumed.messages is None
    assert resumed.prompt == "<prompt>Hello, wor"
    assert resumed.sampling.max_tokens == 46 and "max_tokens" in resumed.explicit
    assert resumed.request_id != original.request_id
    uncapped = GenerateRequest(prompt="x")
    assert continuation(uncapped, "x", "yz", 2, cap=100).sampling.max_tokens == 98
    structured = GenerateRequest(
        prompt="x",
        sampling=SamplingParams(structured=StructuredOutput(kind="json_object")),
    )
    with pytest.raises(ClusterError, match="cannot resume"):
        continuation(structured, "x", "{", 1, cap=100)


def test_two_api_servers_share_one_counter_per_tenant_through_the_ledger() -> None:
    """A tenant served through one API server waits behind others on a second server: each
    router's charges go to the cluster's ledger and come back as everyone's totals."""

    async def scenario(share: bool) -> list[str]:
        ledger = ShareTotals()
        first, second = ClusterRouter(), ClusterRouter()
        first.set_replicas("m", replicas(1, capacity=8))
        second.set_replicas("m", replicas(1, capacity=1))
        busy = await second.acquire("m", "someone")  # the second server's one slot is taken
        assert busy is not None
        order: list[str] = []

        async def one(tenant: str) -> None:
            replica = await second.acquire("m", tenant)
            assert replica is not None
            order.append(tenant)
            second.charge("m", tenant, 10, 20)
            await asyncio.sleep(0)
            second.release("m", replica)

        waiting = [asyncio.ensure_future(one(t)) for t in ["flood", "small"] * 4]
        await asyncio.sleep(0)
        for _ in range(5):  # meanwhile the flooding tenant is served through the first server
            first.charge("m", "flood", 10, 20)
        if share:
            for server, router in (("first", first), ("second", second)):
                router.merge_shares(ledger.exchange(server, router.take_charges()))
        second.release("m", busy)
        await asyncio.gather(*waiting)
        return order

    assert asyncio.run(scenario(share=False)) == ["flood", "small"] * 4  # each server alone
    assert asyncio.run(scenario(share=True)) == ["small"] * 4 + ["flood"] * 4


def test_charges_that_miss_the_ledger_are_sent_with_the_next_exchange() -> None:
    ledger = ShareTotals()
    router = ClusterRouter()
    router.set_replicas("m", replicas(1))
    router.charge("m", "t", 10, 0)
    charges = router.take_charges()
    router.restore_charges(charges)  # the head was away
    router.charge("m", "t", 10, 0)
    totals = ledger.exchange("s", router.take_charges())
    router.merge_shares(totals)
    assert totals["m"]["t"] > 0 and totals["m"]["t"] == pytest.approx(
        router.queue("m").counters["t"]
    )
    assert router.take_charges() == {} and ledger.status()["servers"] == ["s"]

"""The cluster router in simulation: 100 replicas, 10,000 tenants, a synthetic trace.

``llmasos bench router`` replays one seeded synthetic trace (conversations of several turns
from tenants of Zipf-distributed activity, every conversation under one of a few shared
system prompts) against four routers and reports, for each: the prefix-hit rate (a turn
lands on a replica whose prefix cache still holds its conversation), queueing delay
(arrival to start) overall and for the light tenants, the fairness gap and the router's own
overhead per request. The fairness gap is the property the Virtual Token Counter bounds: over
every window of ``fairness_window`` seconds, the largest difference in service (weighted
tokens started) between two tenants that were waiting for the whole window, in units of the
largest single request's cost; the same ledger is kept for every router.

The model of a replica is deliberately simple: ``slots`` requests run at once, each taking
``prefill_ms`` per uncached prompt token plus ``decode_ms`` per output token; a replica
remembers its last ``cache_conversations`` conversations (LRU), and a hit prefills only the
new turn. Routers:

- ``random`` / ``round-robin``: send each request to a replica at once (its local FIFO queue);
- ``p2c``: the power of two choices on queue depth, no affinity, FIFO;
- ``llmasos``: the real `Placement` (prefix affinity + two choices) and `FairQueue` (one
  virtual token counter per tenant) of ``llmasos.distributed.router``, holding requests in
  the router while every slot is busy.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from llmasos.distributed.router import FairQueue, Placement, ReplicaState, stable_hash
from llmasos.kernel.scheduler.policies import OUTPUT_TOKEN_WEIGHT, PROMPT_TOKEN_WEIGHT

ROUTERS = ("random", "round-robin", "p2c", "llmasos")


@dataclass(frozen=True)
class SimulationConfig:
    replicas: int = 100
    tenants: int = 10_000
    requests: int = 30_000
    slots: int = 8
    """Requests a replica runs at once."""
    load: float = 0.9
    """Offered load as a fraction of the cluster's capacity without any prefix cache."""
    zipf: float = 1.1
    """Tenant activity skew: tenant k sends in proportion to 1 / k**zipf."""
    system_prompts: int = 20
    system_tokens: int = 400
    turn_tokens: int = 60
    """Tokens of each new user message."""
    output_tokens: int = 120
    """Mean output tokens (exponential)."""
    turns: tuple[int, int] = (2, 8)
    think_seconds: float = 5.0
    """Mean gap between two turns of one conversation."""
    prefill_ms: float = 1.0
    decode_ms: float = 15.0
    cache_conversations: int = 48
    fairness_window: float = 10.0
    seed: int = 7


@dataclass
class TraceRequest:
    arrival: float
    tenant: int
    conversation: int
    system: int
    cached_tokens: int
    """Prompt tokens a replica that holds this conversation need not prefill again."""
    prompt_tokens: int
    output_tokens: int


def make_trace(config: SimulationConfig) -> list[TraceRequest]:
    """A seeded synthetic trace (the same for every router)."""
    rng = random.Random(config.seed)
    weights = [1.0 / (k + 1) ** config.zipf for k in range(config.tenants)]
    mean_turns = sum(config.turns) / 2
    mean_prompt = config.system_tokens + mean_turns * (config.turn_tokens + config.output_tokens)
    mean_service = (mean_prompt * config.prefill_ms + config.output_tokens * config.decode_ms) / 1e3
    rate = config.load * config.replicas * config.slots / mean_service
    conversations = math.ceil(config.requests / mean_turns)
    starts_gap = mean_turns / rate
    trace: list[TraceRequest] = []
    tenants = rng.choices(range(config.tenants), weights, k=conversations)
    clock = 0.0
    for conversation, tenant in enumerate(tenants):
        clock += rng.expovariate(1.0 / starts_gap)
        system = stable_hash(f"tenant-system-{tenant}") % config.system_prompts
        at, history = clock, 0
        for _ in range(rng.randint(*config.turns)):
            output = max(1, int(rng.expovariate(1.0 / config.output_tokens)))
            prompt = config.system_tokens + history + config.turn_tokens
            trace.append(
                TraceRequest(
                    at, tenant, conversation, system, prompt - config.turn_tokens, prompt, output
                )
            )
            history += config.turn_tokens + output
            at += rng.expovariate(1.0 / config.think_seconds)
    trace.sort(key=lambda r: r.arrival)
    return [r for r in trace if r.arrival <= clock]  # steady state: no trailing turns only


@dataclass
class _Replica:
    state: ReplicaState
    cache: OrderedDict[int, None] = field(default_factory=OrderedDict)
    local: deque[int] = field(default_factory=deque)
    """Requests assigned but not started (the baselines' per-replica FIFO)."""


@dataclass
class RouterResult:
    router: str
    requests: int
    prefix_hit_rate: float
    queue_mean_s: float
    queue_p95_s: float
    light_queue_mean_s: float
    """Mean queueing delay of the tenants outside the 10 busiest."""
    heavy_queue_mean_s: float
    fairness_gap: float
    """Largest difference in service between two tenants backlogged over a whole window, in
    units of the largest single request's cost."""
    overhead_p50_us: float
    overhead_p95_us: float
    makespan_s: float


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def simulate(router: str, trace: list[TraceRequest], config: SimulationConfig) -> RouterResult:
    rng = random.Random(config.seed + 1)
    replicas = [
        _Replica(ReplicaState(f"replica-{i}", capacity=config.slots))
        for i in range(config.replicas)
    ]
    states = [r.state for r in replicas]
    index_of = {id(r.state): i for i, r in enumerate(replicas)}
    placement = Placement(rng=rng)
    fair: FairQueue[int] = FairQueue()
    ledger: FairQueue[int] = fair if router == "llmasos" else FairQueue()
    """Virtual token counters of every tenant and who is waiting (router or replica), kept
    the same way for every router so their fairness gaps compare."""
    robin = itertools.cycle(range(config.replicas))
    events: list[tuple[float, int, int, int]] = []  # (time, kind 0=finish 1=arrive, id, replica)
    for rid, request in enumerate(trace):
        heapq.heappush(events, (request.arrival, 1, rid, -1))
    started: dict[int, float] = {}
    hits = 0
    overheads: dict[int, float] = {}
    """Microseconds the router spent deciding for each request."""
    biggest = max(
        r.prompt_tokens * PROMPT_TOKEN_WEIGHT + r.output_tokens * OUTPUT_TOKEN_WEIGHT for r in trace
    )
    gap = 0.0
    now = 0.0

    def start(rid: int, replica: _Replica) -> None:
        nonlocal hits
        request = trace[rid]
        replica.state.in_flight += 1
        started[rid] = now
        if router != "llmasos":
            ledger.remove(str(request.tenant), rid)
        if not ledger.is_backlogged(str(request.tenant)):
            since.pop(str(request.tenant), None)
        ledger.charge(str(request.tenant), request.prompt_tokens, request.output_tokens)
        hit = request.conversation in replica.cache
        if hit:
            hits += 1
            replica.cache.move_to_end(request.conversation)
        else:
            replica.cache[request.conversation] = None
            if len(replica.cache) > config.cache_conversations:
                replica.cache.popitem(last=False)
        prefill = request.prompt_tokens - (request.cached_tokens if hit else 0)
        service = (prefill * config.prefill_ms + request.output_tokens * config.decode_ms) / 1e3
        heapq.heappush(events, (now + service, 0, rid, index_of[id(replica.state)]))

    since: dict[str, float] = {}
    """When each waiting tenant's current backlog began."""
    snapshots: deque[tuple[float, dict[str, float]]] = deque()
    next_sample = 0.0

    def measure_gap() -> None:
        """Service in the last window of the tenants backlogged for all of it."""
        nonlocal gap
        snapshots.append((now, {t: ledger.counters[t] for t in ledger.backlogged()}))
        while len(snapshots) > 1 and snapshots[1][0] <= now - config.fairness_window:
            snapshots.popleft()
        then, counters = snapshots[0]
        if then > now - config.fairness_window:
            return
        served = [
            ledger.counters[t] - counters[t] for t in counters if t in since and since[t] <= then
        ]
        if len(served) > 1:
            gap = max(gap, (max(served) - min(served)) / biggest)

    def arrive(tenant: str, rid: int) -> None:
        if not ledger.is_backlogged(tenant):
            since[tenant] = now
        ledger.push(tenant, rid)

    def dispatch_fair() -> None:
        while len(fair):
            head = fair.peek()
            assert head is not None
            rid = head[1]
            began = time.perf_counter_ns()
            chosen = placement.choose(states, stable_hash(str(trace[rid].conversation)))
            if chosen is None:
                return
            fair.pop()
            overheads[rid] += (time.perf_counter_ns() - began) / 1e3
            start(rid, replicas[index_of[id(chosen)]])

    while events:
        now, kind, rid, where = heapq.heappop(events)
        request = trace[rid]
        if kind == 1:
            if router != "llmasos":
                arrive(str(request.tenant), rid)
            if router == "llmasos":
                began = time.perf_counter_ns()
                arrive(str(request.tenant), rid)
                overheads[rid] = (time.perf_counter_ns() - began) / 1e3
                dispatch_fair()
            else:
                began = time.perf_counter_ns()
                if router == "random":
                    target = replicas[rng.randrange(config.replicas)]
                elif router == "round-robin":
                    target = replicas[next(robin)]
                else:  # two choices on queue depth: running plus queued on the replica
                    a, b = rng.sample(replicas, 2)
                    depth_a = a.state.in_flight + len(a.local)
                    target = a if depth_a <= b.state.in_flight + len(b.local) else b
                overheads[rid] = (time.perf_counter_ns() - began) / 1e3
                if target.state.in_flight < config.slots:
                    start(rid, target)
                else:
                    target.local.append(rid)
        else:
            replica = replicas[where]
            replica.state.in_flight -= 1
            if router == "llmasos":
                dispatch_fair()
            elif replica.local:
                start(replica.local.popleft(), replica)
        if now >= next_sample:
            measure_gap()
            next_sample = now + 1.0
    delays = {rid: started[rid] - trace[rid].arrival for rid in started}
    activity: dict[int, int] = {}
    for request in trace:
        activity[request.tenant] = activity.get(request.tenant, 0) + 1
    heavy = set(sorted(activity, key=lambda t: -activity[t])[:10])
    light = [d for rid, d in delays.items() if trace[rid].tenant not in heavy]
    heavy_delays = [d for rid, d in delays.items() if trace[rid].tenant in heavy]
    values = list(delays.values())
    return RouterResult(
        router=router,
        requests=len(trace),
        prefix_hit_rate=hits / len(trace),
        queue_mean_s=statistics.fmean(values),
        queue_p95_s=_percentile(values, 0.95),
        light_queue_mean_s=statistics.fmean(light) if light else 0.0,
        heavy_queue_mean_s=statistics.fmean(heavy_delays) if heavy_delays else 0.0,
        fairness_gap=gap,
        overhead_p50_us=_percentile(list(overheads.values()), 0.5),
        overhead_p95_us=_percentile(list(overheads.values()), 0.95),
        makespan_s=now,
    )


def run(config: SimulationConfig, routers: tuple[str, ...] = ROUTERS) -> dict[str, Any]:
    trace = make_trace(config)
    results = [simulate(router, trace, config) for router in routers]
    return {"config": asdict(config), "results": [asdict(r) for r in results]}


def plot(report: dict[str, Any], path: str) -> None:
    """Bars of prefix-hit rate, queueing delay (all and light tenants) and fairness gap."""
    from llmasos.bench.plot import _pyplot

    plt = _pyplot()
    results = report["results"]
    names = [r["router"] for r in results]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].bar(names, [100 * r["prefix_hit_rate"] for r in results], color="tab:green")
    axes[0].set_title("prefix-hit rate (%)")
    width = 0.4
    positions = range(len(names))
    axes[1].bar(
        [p - width / 2 for p in positions],
        [r["queue_mean_s"] for r in results],
        width,
        label="all tenants",
    )
    axes[1].bar(
        [p + width / 2 for p in positions],
        [r["light_queue_mean_s"] for r in results],
        width,
        label="light tenants",
    )
    axes[1].set_xticks(list(positions), names)
    axes[1].set_title("mean queueing delay (s)")
    axes[1].legend()
    axes[2].bar(names, [r["fairness_gap"] for r in results], color="tab:red")
    axes[2].set_title("fairness gap (x one request's cost)")
    config = report["config"]
    figure.suptitle(
        f"router simulation: {config['replicas']} replicas, {config['tenants']} tenants, "
        f"{config['requests']} requests, load {config['load']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

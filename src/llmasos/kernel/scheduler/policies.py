"""Scheduling policies: who waits in what order, and who yields when something must give.

- `FCFSPolicy`: arrival order; under memory pressure the newest running request yields.
- `PriorityPolicy`: lower ``priority`` first, then arrival; a waiting request preempts a
  running one of strictly worse priority when no sequence slot is free.
- `FairPolicy` (default): the Virtual Token Counter of Sheng et al., "Fairness in Serving
  Large Language Models" (OSDI 2024). Each tenant has a counter of weighted tokens served
  (prompt tokens weigh 1, output tokens 2, divided by the tenant's weight); the backlogged
  tenant with the smallest counter goes next. A tenant that becomes backlogged after being
  idle is lifted to the smallest counter among backlogged tenants, so idling banks no credit.
  When all slots are busy and the next tenant holds fewer than its share of slots while
  another holds more, one request of the over-served tenant is preempted. The counters live
  in a `TenantShares` ledger; the kernel hands every model's policy and its job lanes the
  same one, so a tenant's service anywhere in the kernel counts against it here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict

from llmasos.kernel.request import Request
from llmasos.kernel.scheduler.shares import TenantShares

PROMPT_TOKEN_WEIGHT = 1.0
OUTPUT_TOKEN_WEIGHT = 2.0


class SchedulingPolicy(ABC):
    """A waiting queue with an order, plus the choice of victims."""

    @abstractmethod
    def push(self, request: Request) -> None:
        """Add a new or preempted request to the waiting queue."""

    @abstractmethod
    def peek(self) -> Request | None:
        """The request that should be admitted next."""

    @abstractmethod
    def remove(self, request: Request) -> None:
        """Take a request out of the waiting queue (admitted or aborted)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def waiting(self) -> list[Request]:
        """All waiting requests (any order)."""

    def charge(self, request: Request, prompt_tokens: int, output_tokens: int) -> None:  # noqa: B027
        """Account tokens served to a request's tenant (only the fair policy cares)."""

    def observe_running(self, running: list[Request]) -> None:  # noqa: B027
        """Told the running set before each admission round."""

    def victim_for_memory(self, running: list[Request]) -> Request:
        """The running request to preempt when the KV pool is short: the newest by default."""
        return max(running, key=lambda r: r.arrival_time)

    def victim_for_slot(
        self, candidate: Request, running: list[Request], max_sequences: int
    ) -> Request | None:
        """A running request to preempt so ``candidate`` can start now; None to let it wait."""
        return None


class FCFSPolicy(SchedulingPolicy):
    def __init__(self) -> None:
        self._queue: list[Request] = []

    def push(self, request: Request) -> None:
        self._queue.append(request)
        self._queue.sort(key=lambda r: r.arrival_time)

    def peek(self) -> Request | None:
        return self._queue[0] if self._queue else None

    def remove(self, request: Request) -> None:
        self._queue.remove(request)

    def __len__(self) -> int:
        return len(self._queue)

    def waiting(self) -> list[Request]:
        return list(self._queue)


class PriorityPolicy(FCFSPolicy):
    @staticmethod
    def _key(request: Request) -> tuple[int, float]:
        return (request.priority, request.arrival_time)

    def push(self, request: Request) -> None:
        self._queue.append(request)
        self._queue.sort(key=self._key)

    def victim_for_memory(self, running: list[Request]) -> Request:
        return max(running, key=self._key)

    def victim_for_slot(
        self, candidate: Request, running: list[Request], max_sequences: int
    ) -> Request | None:
        worst = max(running, key=self._key, default=None)
        if worst is not None and worst.priority > candidate.priority:
            return worst
        return None


class FairPolicy(SchedulingPolicy):
    """Virtual Token Counter fair share between tenants, weighted by tenant; ``shares`` is
    the ledger of counters (a private one when None)."""

    def __init__(
        self, weights: dict[str, float] | None = None, shares: TenantShares | None = None
    ) -> None:
        self._queues: dict[str, list[Request]] = defaultdict(list)
        self.counters = shares if shares is not None else TenantShares()
        self.weights: dict[str, float] = dict(weights or {})
        self._slots: dict[str, int] = {}

    def _weight(self, tenant: str) -> float:
        return max(self.weights.get(tenant, 1.0), 1e-6)

    def _backlogged(self) -> list[str]:
        return [t for t, q in self._queues.items() if q]

    def push(self, request: Request) -> None:
        tenant = request.tenant
        backlogged = self._backlogged()
        if not self._queues[tenant] and tenant not in backlogged:
            self.counters.lift(tenant, backlogged)
        queue = self._queues[tenant]
        queue.append(request)
        queue.sort(key=lambda r: (r.priority, r.arrival_time))

    def peek(self) -> Request | None:
        backlogged = self._backlogged()
        if not backlogged:
            return None
        tenant = min(
            backlogged,
            key=lambda t: (
                self.counters[t],
                self._slots.get(t, 0) / self._weight(t),
                self._queues[t][0].arrival_time,
            ),
        )
        return self._queues[tenant][0]

    def observe_running(self, running: list[Request]) -> None:
        slots: dict[str, int] = defaultdict(int)
        for request in running:
            slots[request.tenant] += 1
        self._slots = dict(slots)

    def remove(self, request: Request) -> None:
        queue = self._queues[request.tenant]
        queue.remove(request)
        if not queue:
            del self._queues[request.tenant]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting(self) -> list[Request]:
        return [r for q in self._queues.values() for r in q]

    def charge(self, request: Request, prompt_tokens: int, output_tokens: int) -> None:
        cost = prompt_tokens * PROMPT_TOKEN_WEIGHT + output_tokens * OUTPUT_TOKEN_WEIGHT
        self.counters.charge(request.tenant, cost / self._weight(request.tenant))

    def victim_for_memory(self, running: list[Request]) -> Request:
        return max(running, key=lambda r: (self.counters[r.tenant], r.arrival_time))

    def victim_for_slot(
        self, candidate: Request, running: list[Request], max_sequences: int
    ) -> Request | None:
        slots: dict[str, int] = defaultdict(int)
        for request in running:
            slots[request.tenant] += 1
        tenants = set(slots) | set(self._backlogged())
        share = max_sequences / max(len(tenants), 1)
        if slots[candidate.tenant] >= math.floor(share):
            return None
        over = [t for t, n in slots.items() if n > share]
        if not over:
            return None
        tenant = max(over, key=lambda t: (slots[t] / self._weight(t), self.counters[t]))
        return max(
            (r for r in running if r.tenant == tenant),
            key=lambda r: (r.priority, r.arrival_time),
        )


def make_policy(name: str, shares: TenantShares | None = None) -> SchedulingPolicy:
    """The policy called ``name``; the fair policy keeps its counters in ``shares``."""
    if name == "fair":
        return FairPolicy(shares=shares)
    policies: dict[str, type[SchedulingPolicy]] = {"fcfs": FCFSPolicy, "priority": PriorityPolicy}
    return policies[name]()

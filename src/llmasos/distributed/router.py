"""Where a request runs in the cluster, and when: placement and the global fair queue.

Pure logic, no Ray: the cluster engine client drives it, the simulation benchmark drives it,
and the unit tests plug fake replicas into the same `ReplicaState` objects.

- `Placement.choose`: prefix affinity first (rendezvous hashing of the request's prefix key
  over the model's replicas, so a conversation's turns land where its KV cache is, and a
  replica that leaves moves only its own keys), unless that replica is full (by default;
  or more than ``affinity_slack`` requests deeper than the least loaded one); then the power
  of two choices (two replicas sampled, the shallower queue wins). A replica never holds more
  than its capacity, so affinity cannot pile work onto one replica.
- `FairQueue`: the Virtual Token Counter (Sheng et al., OSDI 2024) across the whole cluster.
  One counter per tenant of weighted tokens served on any replica; when every replica is
  full, the backlogged tenant with the smallest counter is admitted next, and a tenant that
  returns from idle is lifted to the smallest backlogged counter so idling banks no credit.
  With several API servers, each router's charges since the last exchange (`take_charges`)
  go to the cluster's one ledger (`distributed.shares`), and its totals, everyone's charges,
  come back (`merge_shares`): one counter per tenant across servers as well as replicas.
- `ClusterRouter`: both, per model, for async callers: `acquire` returns a replica with a free
  slot at once when there is one (work-conserving), else waits in the fair queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from llmasos.errors import QueueFullError
from llmasos.kernel.interface import GenerateRequest
from llmasos.kernel.scheduler.policies import OUTPUT_TOKEN_WEIGHT, PROMPT_TOKEN_WEIGHT

T = TypeVar("T")

_MASK = (1 << 64) - 1


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


PREFIX_CHARS = 2048
"""How much of the conversation's start the affinity key reads."""


def _text(content: object) -> str:
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)


def prefix_key(model: str, request: GenerateRequest) -> int:
    """The affinity key of a request: its model, system prompt and first user turn (the
    part every later turn of the same conversation repeats), or a raw prompt's start."""
    if request.messages is not None:
        system = request.system or ""
        first = ""
        for message in request.messages:
            if message.get("role") == "system" and not system:
                system = _text(message.get("content"))
            elif message.get("role") != "system":
                first = _text(message.get("content"))
                break
        text = f"{system}\x00{first}"
    else:
        text = request.prompt or ""
    return stable_hash(f"{model}\x00{text[:PREFIX_CHARS]}")


def _mix(value: int) -> int:
    """splitmix64's finalizer: a cheap, well-spread 64-bit mix for rendezvous scores."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    return value ^ (value >> 31)


@dataclass(eq=False)
class ReplicaState:
    """The router's view of one replica: its capacity and the requests it has on it."""

    replica_id: str
    capacity: int = 8
    """Requests it runs at once (its batch size); more wait in the router, not on it."""
    in_flight: int = 0
    healthy: bool = True
    node: str = ""
    handle: object = None
    """What the caller needs to reach it (a Ray actor handle); the router never touches it."""
    id_hash: int = field(init=False)

    def __post_init__(self) -> None:
        self.id_hash = stable_hash(self.replica_id)

    @property
    def has_room(self) -> bool:
        return self.healthy and self.in_flight < self.capacity


class Placement:
    """Prefix affinity, then the power of two choices on queue depth."""

    def __init__(
        self, *, affinity_slack: int | None = None, rng: random.Random | None = None
    ) -> None:
        self.affinity_slack = affinity_slack
        self.rng = rng or random.Random()

    def preferred(self, replicas: Sequence[ReplicaState], key_hash: int) -> ReplicaState | None:
        """The healthy replica that owns ``key_hash`` (highest rendezvous score)."""
        best: ReplicaState | None = None
        best_score = -1
        for replica in replicas:
            if not replica.healthy:
                continue
            score = _mix(key_hash ^ replica.id_hash)
            if score > best_score:
                best, best_score = replica, score
        return best

    def choose(
        self, replicas: Sequence[ReplicaState], key_hash: int | None = None
    ) -> ReplicaState | None:
        """The replica to run on now, or None when every healthy replica is full."""
        open_replicas = [r for r in replicas if r.has_room]
        if not open_replicas:
            return None
        if key_hash is not None:
            owner = self.preferred(replicas, key_hash)
            if owner is not None and owner.has_room:
                if self.affinity_slack is None:
                    return owner
                least = min(r.in_flight for r in open_replicas)
                if owner.in_flight <= least + self.affinity_slack:
                    return owner
        return self.two_choices(open_replicas)

    def two_choices(self, replicas: Sequence[ReplicaState]) -> ReplicaState:
        if len(replicas) == 1:
            return replicas[0]
        first, second = self.rng.sample(range(len(replicas)), 2)
        a, b = replicas[first], replicas[second]
        return a if a.in_flight <= b.in_flight else b


class FairQueue(Generic[T]):
    """Waiting items per tenant, released in Virtual Token Counter order (FIFO per tenant)."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.counters: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        """Weighted charges not yet sent to the cluster's ledger."""
        self.weights = dict(weights or {})
        self._queues: dict[str, deque[T]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _weight(self, tenant: str) -> float:
        return max(self.weights.get(tenant, 1.0), 1e-6)

    def _floor(self) -> float | None:
        """The smallest counter among backlogged tenants (None when nobody waits)."""
        while self._heap:
            counter, _, tenant = self._heap[0]
            if tenant in self._queues and self.counters[tenant] == counter:
                return counter
            heapq.heappop(self._heap)
            if tenant in self._queues:  # stale: its counter grew since it was pushed
                heapq.heappush(self._heap, (self.counters[tenant], next(self._order), tenant))
        return None

    def push(self, tenant: str, item: T) -> None:
        queue = self._queues.get(tenant)
        if queue is None:
            floor = self._floor()
            counter = self.counters.get(tenant, 0.0)
            if floor is not None and counter < floor:
                counter = floor
            self.counters[tenant] = counter
            queue = self._queues[tenant] = deque()
            heapq.heappush(self._heap, (counter, next(self._order), tenant))
        queue.append(item)
        self._size += 1

    def backlogged(self) -> list[str]:
        """Tenants with something waiting."""
        return list(self._queues)

    def is_backlogged(self, tenant: str) -> bool:
        return tenant in self._queues

    def peek(self) -> tuple[str, T] | None:
        if self._floor() is None:
            return None
        tenant = self._heap[0][2]
        return tenant, self._queues[tenant][0]

    def pop(self) -> tuple[str, T] | None:
        head = self.peek()
        if head is None:
            return None
        self._take(head[0], 0)
        return head

    def remove(self, tenant: str, item: T) -> bool:
        queue = self._queues.get(tenant)
        if queue is None:
            return False
        for index, queued in enumerate(queue):
            if queued == item:
                self._take(tenant, index)
                return True
        return False

    def _take(self, tenant: str, index: int) -> None:
        queue = self._queues[tenant]
        del queue[index]
        self._size -= 1
        if not queue:
            del self._queues[tenant]  # its heap entry goes stale and is dropped lazily

    def charge(self, tenant: str, prompt_tokens: int = 0, output_tokens: int = 0) -> None:
        """Count tokens served to ``tenant`` (on any replica)."""
        cost = prompt_tokens * PROMPT_TOKEN_WEIGHT + output_tokens * OUTPUT_TOKEN_WEIGHT
        weighted = cost / self._weight(tenant)
        self.counters[tenant] = self.counters.get(tenant, 0.0) + weighted
        self.pending[tenant] = self.pending.get(tenant, 0.0) + weighted

    def take_pending(self) -> dict[str, float]:
        """The charges since the last call, for the ledger (put back with `restore`)."""
        taken, self.pending = self.pending, {}
        return taken

    def restore(self, charges: dict[str, float]) -> None:
        """Charges `take_pending` gave that never reached the ledger: send them next time."""
        for tenant, weighted in charges.items():
            self.pending[tenant] = self.pending.get(tenant, 0.0) + weighted

    def merge(self, totals: dict[str, float]) -> None:
        """Adopt the ledger's totals (every server's charges, ours included, up to the
        exchange). Counters only grow: a tenant's counter becomes the larger of its own and
        the total plus what was charged here since, so neither a lift nor a charge made
        during the exchange is lost. The heap catches up lazily (`_floor`)."""
        for tenant, total in totals.items():
            combined = total + self.pending.get(tenant, 0.0)
            if combined > self.counters.get(tenant, 0.0):
                self.counters[tenant] = combined


@dataclass(eq=False)
class _Waiter:
    key_hash: int | None
    exclude: frozenset[str]
    future: asyncio.Future[ReplicaState | None]


class ClusterRouter:
    """Replicas per model, placement, and one fair queue per model, for async callers."""

    def __init__(
        self,
        *,
        max_queue: int = 256,
        affinity_slack: int | None = None,
        weights: dict[str, float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.placement = Placement(affinity_slack=affinity_slack, rng=rng)
        self.weights = dict(weights or {})
        self.replicas: dict[str, list[ReplicaState]] = {}
        self.queues: dict[str, FairQueue[_Waiter]] = {}

    # --- the replica set ----------------------------------------------------------------

    def set_replicas(self, model: str, replicas: Iterable[ReplicaState]) -> None:
        """Replace ``model``'s replicas, keeping the counts of the ones that stay."""
        known = {r.replica_id: r for r in self.replicas.get(model, [])}
        current = []
        for replica in replicas:
            old = known.get(replica.replica_id)
            if old is not None:
                old.capacity, old.handle, old.node = replica.capacity, replica.handle, replica.node
                old.healthy = replica.healthy  # it answered the refresh: alive again
                current.append(old)
            else:
                current.append(replica)
        self.replicas[model] = current
        self._dispatch(model)

    def models(self) -> list[str]:
        return [m for m, replicas in self.replicas.items() if replicas]

    def mark_unhealthy(self, model: str, replica_id: str) -> None:
        for replica in self.replicas.get(model, []):
            if replica.replica_id == replica_id:
                replica.healthy = False
        self._dispatch(model)

    def queue(self, model: str) -> FairQueue[_Waiter]:
        queue = self.queues.get(model)
        if queue is None:
            queue = self.queues[model] = FairQueue(self.weights)
        return queue

    # --- requests -------------------------------------------------------------------------

    async def acquire(
        self,
        model: str,
        tenant: str,
        key_hash: int | None = None,
        *,
        exclude: Iterable[str] = (),
    ) -> ReplicaState | None:
        """A replica slot for one request (call `release` when it ends); None when the model
        has no healthy replica left outside ``exclude``. Waits in the fair queue while all
        replicas are full; `QueueFullError` when ``max_queue`` requests already wait."""
        excluded = frozenset(exclude)
        if not self._candidates(model, excluded, healthy_only=True):
            return None
        queue = self.queue(model)
        if not len(queue):
            replica = self.placement.choose(self._candidates(model, excluded), key_hash)
            if replica is not None:
                replica.in_flight += 1
                return replica
        if len(queue) >= self.max_queue:
            raise QueueFullError(
                f"{model} has {len(queue)} requests waiting in the cluster (max_queue); "
                "retry later",
                retry_after=max(1.0, len(queue) * 0.05),
            )
        waiter = _Waiter(key_hash, excluded, asyncio.get_running_loop().create_future())
        queue.push(tenant, waiter)
        self._dispatch(model)
        try:
            return await waiter.future
        except BaseException:
            granted = not queue.remove(tenant, waiter) and waiter.future.done()
            if granted and not waiter.future.cancelled():
                replica = waiter.future.result()
                if replica is not None:  # a slot was granted as the caller gave up
                    self.release(model, replica)
            raise

    def release(self, model: str, replica: ReplicaState) -> None:
        replica.in_flight = max(0, replica.in_flight - 1)
        self._dispatch(model)

    def charge(self, model: str, tenant: str, prompt_tokens: int, output_tokens: int) -> None:
        self.queue(model).charge(tenant, prompt_tokens, output_tokens)

    def take_charges(self) -> dict[str, dict[str, float]]:
        """Model -> tenant -> weighted charges since the last exchange with the ledger."""
        taken = {model: queue.take_pending() for model, queue in self.queues.items()}
        return {model: charges for model, charges in taken.items() if charges}

    def restore_charges(self, charges: dict[str, dict[str, float]]) -> None:
        """Charges that did not reach the ledger (it was away): sent with the next exchange."""
        for model, by_tenant in charges.items():
            self.queue(model).restore(by_tenant)

    def merge_shares(self, totals: dict[str, dict[str, float]]) -> None:
        """The ledger's totals, model -> tenant -> counter; waiters re-ordered by them."""
        for model, by_tenant in totals.items():
            self.queue(model).merge(by_tenant)
            self._dispatch(model)

    def _candidates(
        self, model: str, exclude: frozenset[str], *, healthy_only: bool = False
    ) -> list[ReplicaState]:
        return [
            r
            for r in self.replicas.get(model, [])
            if r.replica_id not in exclude and (r.healthy or not healthy_only)
        ]

    def _dispatch(self, model: str) -> None:
        """Hand free slots to waiters, the least-served tenant first."""
        queue = self.queues.get(model)
        while queue is not None and len(queue):
            head = queue.peek()
            assert head is not None
            waiter = head[1]
            candidates = self._candidates(model, waiter.exclude)
            if not any(r.healthy for r in candidates):
                queue.pop()
                if not waiter.future.done():
                    waiter.future.set_result(None)
                continue
            replica = self.placement.choose(candidates, waiter.key_hash)
            if replica is None:
                return
            queue.pop()
            if waiter.future.done():  # cancelled while waiting
                continue
            replica.in_flight += 1
            waiter.future.set_result(replica)

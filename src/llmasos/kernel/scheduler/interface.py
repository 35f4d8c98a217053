"""What a scheduler is, and what it hands the engine each step.

A scheduler holds the waiting and running requests of one model. Each step, `schedule()`
decides which requests run and how many of their pending tokens are fed (a decode token,
or a chunk of a prompt under the step's token budget), admitting, and preempting when a
resource is short or fairness demands it. After the backend executes, `update()` records
what each request sampled. The scheduler knows token counts, not tokenization.

It reaches the backend's KV state only through `KVCacheInterface`, which the engine provides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from llmasos.kernel.request import Request


class KVCacheInterface(ABC):
    """The backend's sequence slots and KV pool, as the scheduler sees them."""

    @property
    @abstractmethod
    def max_sequences(self) -> int: ...

    @property
    @abstractmethod
    def capacity_tokens(self) -> int: ...

    @property
    @abstractmethod
    def used_tokens(self) -> int: ...

    @abstractmethod
    def allocate(self, request: Request) -> int:
        """Give the request a sequence; return prompt tokens already cached (prefix hit)."""

    @abstractmethod
    def free(self, request: Request) -> None:
        """Release the request's sequence (its KV may stay as a prefix cache)."""


@dataclass(frozen=True)
class ScheduledChunk:
    """Feed ``num_tokens`` pending tokens of ``request``; sample if that reaches its end."""

    request: Request
    num_tokens: int
    sample: bool


@dataclass
class SchedulerOutput:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    admitted: list[Request] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_scheduled_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class SchedulerInterface(ABC):
    """Queues of one model's requests; the `schedule` half of the engine's step loop."""

    @abstractmethod
    def add_request(self, request: Request) -> None:
        """Queue a new request (WAITING)."""

    @abstractmethod
    def finish_request(self, request: Request, status: object) -> None:
        """Mark a request finished (aborted, timed out, stopped ...) and free its sequence."""

    @abstractmethod
    def schedule(self) -> SchedulerOutput:
        """Pick this step's work."""

    @abstractmethod
    def update(self, output: SchedulerOutput, sampled: dict[int, int]) -> None:
        """Account for a step: advance computed tokens, append sampled tokens (by seq id)."""

    @property
    @abstractmethod
    def num_waiting(self) -> int: ...

    @property
    @abstractmethod
    def num_running(self) -> int: ...

    @abstractmethod
    def running_per_tenant(self) -> dict[str, int]:
        """How many running requests each tenant has (tenants running nothing are absent)."""

    def has_unfinished(self) -> bool:
        return self.num_waiting + self.num_running > 0

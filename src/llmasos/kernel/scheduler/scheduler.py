"""The step scheduler: continuous batching with chunked prefill under a token budget.

Each step, in order:
1. running requests that are decoding get their one token;
2. running requests still prefilling get a chunk of their prompt, as the budget allows;
3. waiting requests are admitted in the policy's order while a sequence slot, KV room and
   budget remain (a long prompt is chunked, so it never stalls the decodes of step 1);
   while any request decodes, prompt chunks together get at most ``max_prefill_while_decoding``
   tokens: on a CPU a step's time grows with every token in it, so a full budget of prompt
   tokens would hold every stream's next token back for that long;
4. if a waiting request is owed a slot (fair share, priority) and none is free, the policy
   names a running request to preempt; it goes back to the queue with its generated tokens.

When the KV pool cannot hold the next tokens, the policy's memory victim is preempted
(recompute preemption: its KV is released and its tokens are fed again on resumption).
"""

from __future__ import annotations

import time
from collections import Counter

from llmasos.kernel.request import Request, RequestStatus
from llmasos.kernel.scheduler.interface import (
    KVCacheInterface,
    ScheduledChunk,
    SchedulerInterface,
    SchedulerOutput,
)
from llmasos.kernel.scheduler.policies import SchedulingPolicy


class Scheduler(SchedulerInterface):
    def __init__(
        self,
        kv_cache: KVCacheInterface,
        policy: SchedulingPolicy,
        *,
        max_batch_tokens: int,
        max_prefill_while_decoding: int | None = None,
    ) -> None:
        self.kv_cache = kv_cache
        self.policy = policy
        self.max_batch_tokens = max_batch_tokens
        self.max_prefill_while_decoding = max_prefill_while_decoding or max_batch_tokens
        self.running: list[Request] = []
        self.num_preemptions = 0

    # --- queues --------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self.policy)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def running_per_tenant(self) -> dict[str, int]:
        return dict(Counter(request.tenant for request in self.running))

    def add_request(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.policy.push(request)

    def finish_request(self, request: Request, status: object) -> None:
        assert isinstance(status, RequestStatus) and status.is_finished
        if request in self.running:
            self.running.remove(request)
            self.kv_cache.free(request)
        elif request.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED):
            self.policy.remove(request)
        request.status = status

    def _preempt(self, request: Request, output: SchedulerOutput) -> None:
        self.running.remove(request)
        self.kv_cache.free(request)
        request.status = RequestStatus.PREEMPTED
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.policy.push(request)
        output.preempted.append(request)
        output.chunks = [c for c in output.chunks if c.request is not request]

    # --- the step ------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        output = SchedulerOutput()
        budget = self.max_batch_tokens
        # Decodes first (one token each), then prefill chunks of running requests.
        ordered = sorted(self.running, key=lambda r: r.num_pending_tokens > 1)
        decoding = any(r.num_pending_tokens == 1 for r in ordered)
        for request in ordered:
            if request not in self.running or budget <= 0:
                continue
            if decoding and request.num_pending_tokens > 1:
                budget = min(budget, self.max_prefill_while_decoding)
            budget -= self._schedule_running(request, budget, output)
        if decoding:
            budget = min(budget, self.max_prefill_while_decoding)
        # Admit waiting requests.
        while budget > 0:
            self.policy.observe_running(self.running)
            candidate = self.policy.peek()
            if candidate is None:
                break
            if len(self.running) >= self.kv_cache.max_sequences:
                victim = self.policy.victim_for_slot(
                    candidate, self.running, self.kv_cache.max_sequences
                )
                if victim is None:
                    break
                budget += sum(c.num_tokens for c in output.chunks if c.request is victim)
                self._preempt(victim, output)
            if not self._fits(candidate, output):
                break
            self.policy.remove(candidate)
            cached = self.kv_cache.allocate(candidate)
            candidate.num_computed_tokens = cached
            if candidate.status == RequestStatus.WAITING:
                candidate.num_cached_tokens = cached
            candidate.status = RequestStatus.RUNNING
            if candidate.scheduled_time is None:
                candidate.scheduled_time = time.monotonic()
            self.running.append(candidate)
            output.admitted.append(candidate)
            used = self._schedule_running(candidate, budget, output)
            if candidate not in self.running:  # it did not fit after all; try next step
                break
            budget -= used
        return output

    def _fits(self, request: Request, output: SchedulerOutput) -> bool:
        """Room in the KV pool for the request's first chunk."""
        used = self.kv_cache.used_tokens + output.num_scheduled_tokens
        free = self.kv_cache.capacity_tokens - used
        needed = min(request.num_tokens, self.max_batch_tokens)
        return free >= needed or not self.running

    def _schedule_running(self, request: Request, budget: int, output: SchedulerOutput) -> int:
        """Schedule the request's next chunk, preempting for KV room; return tokens used."""
        num_tokens = min(request.num_pending_tokens, budget)
        if num_tokens <= 0:
            return 0
        while self._kv_short(num_tokens, output):
            victim = self.policy.victim_for_memory(self.running)
            self._preempt(victim, output)
            if victim is request:
                return 0
        sample = num_tokens == request.num_pending_tokens
        output.chunks.append(ScheduledChunk(request, num_tokens, sample))
        return num_tokens

    def _kv_short(self, num_tokens: int, output: SchedulerOutput) -> bool:
        needed = self.kv_cache.used_tokens + output.num_scheduled_tokens + num_tokens
        return needed > self.kv_cache.capacity_tokens and len(self.running) > 1

    def update(self, output: SchedulerOutput, sampled: dict[int, int]) -> None:
        for chunk in output.chunks:
            request = chunk.request
            if request.is_finished:
                continue
            before = request.num_computed_tokens
            request.num_computed_tokens += chunk.num_tokens
            prompt_part = max(
                0, min(before + chunk.num_tokens, len(request.prompt_tokens)) - before
            )
            token = sampled.get(request.seq_id)
            new_outputs = 0
            if chunk.sample and token is not None:
                request.output_tokens.append(token)
                new_outputs = 1
            charged_prompt = prompt_part if request.num_preemptions == 0 else 0
            self.policy.charge(request, charged_prompt, new_outputs)

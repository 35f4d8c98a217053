"""One resident model's engine: a thread running the step loop over its backend.

``schedule()`` → ``backend.execute()`` → ``update()``: each step the scheduler picks work,
the backend runs one batched forward pass, and the engine turns sampled tokens into text
deltas (stop strings, end of generation, length, deadlines, the repetition guard) sent to
each request's `emit`. Every generated token of every backend passes `_on_token`, so the
limits a reply obeys are enforced there and only there.
Submissions, aborts and backend calls (scoring) arrive through a locked inbox and take
effect at the next step.
The backend is touched only from this thread (it is not thread-safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from llmasos.backends.interface import BackendInterface, SampledToken, SequenceWork
from llmasos.errors import RequestTimeoutError
from llmasos.kernel.detokenizer import IncrementalDetokenizer
from llmasos.kernel.interface import TokenInfo
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.repetition import RepetitionGuard
from llmasos.kernel.request import (
    FINISH_REASONS,
    STOPPED_BY,
    Request,
    RequestDelta,
    RequestStatus,
)
from llmasos.kernel.scheduler.interface import KVCacheInterface, SchedulerOutput
from llmasos.kernel.scheduler.policies import make_policy
from llmasos.kernel.scheduler.scheduler import Scheduler
from llmasos.kernel.scheduler.shares import TenantShares

logger = logging.getLogger(__name__)


class BackendKVCache(KVCacheInterface):
    """The scheduler's view of a backend's slots; counts the tokens of live requests."""

    def __init__(self, backend: BackendInterface) -> None:
        self.backend = backend
        self.live: dict[int, Request] = {}

    @property
    def max_sequences(self) -> int:
        return self.backend.max_sequences

    @property
    def capacity_tokens(self) -> int:
        return self.backend.kv_capacity_tokens

    @property
    def used_tokens(self) -> int:
        return sum(r.num_computed_tokens for r in self.live.values())

    def allocate(self, request: Request) -> int:
        if request.media is not None:
            cached = self.backend.add_image_sequence(
                request.seq_id,
                request.sampling,
                request.all_tokens,
                request.media,
                generated=request.output_tokens,
            )
        else:
            cached = self.backend.add_sequence(
                request.seq_id,
                request.sampling,
                request.all_tokens,
                generated=request.output_tokens,
            )
        self.live[request.seq_id] = request
        return cached

    def free(self, request: Request) -> None:
        if self.live.pop(request.seq_id, None) is not None:
            self.backend.remove_sequence(request.seq_id)


_BackendCall = tuple[
    Callable[[BackendInterface], object], Callable[[object, BaseException | None], None]
]


@dataclass
class _Tracked:
    request: Request
    detokenizer: IncrementalDetokenizer
    guard: RepetitionGuard | None


class Engine:
    """The step loop of one loaded model."""

    def __init__(
        self,
        model_name: str,
        backend: BackendInterface,
        *,
        policy: str,
        max_batch_tokens: int,
        max_prefill_while_decoding: int | None = None,
        metrics: KernelMetrics,
        shares: TenantShares | None = None,
    ) -> None:
        self.model_name = model_name
        self.backend = backend
        self.metrics = metrics
        self.kv_cache = BackendKVCache(backend)
        self.scheduler = Scheduler(
            self.kv_cache,
            make_policy(policy, shares),
            max_batch_tokens=max_batch_tokens,
            max_prefill_while_decoding=max_prefill_while_decoding,
        )
        self._tracked: dict[str, _Tracked] = {}
        self._inbox: deque[tuple[str, object]] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"engine:{model_name}", daemon=True)
        self._thread.start()

    # --- called from other threads -------------------------------------------------------

    def submit(self, request: Request) -> None:
        self._post("add", request)

    def abort(self, request_id: str) -> None:
        self._post("abort", request_id)

    def call(
        self,
        function: Callable[[BackendInterface], object],
        done: Callable[[object, BaseException | None], None],
    ) -> None:
        """Run ``function(backend)`` on the loop thread between two steps (the backend is
        not thread-safe); ``done(result, error)`` is called from that thread."""
        self._post("call", (function, done))

    def stop(self, timeout: float = 30.0) -> None:
        """Abort everything, stop the loop, close the backend."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)
        self.backend.close()

    def _post(self, kind: str, payload: object) -> None:
        with self._wakeup:
            self._inbox.append((kind, payload))
            self._wakeup.notify()

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._inbox and not self._tracked and not self._stopping:
                    self._wakeup.wait()
                inbox = list(self._inbox)
                self._inbox.clear()
                stopping = self._stopping
            for kind, payload in inbox:
                if kind == "add":
                    assert isinstance(payload, Request)
                    self._add(payload)
                elif kind == "call":
                    function, done = cast(_BackendCall, payload)
                    try:
                        result = function(self.backend)
                    except Exception as error:
                        done(None, error)
                    else:
                        done(result, None)
                else:
                    self._abort(str(payload), RequestStatus.FINISHED_ABORTED)
            if stopping:
                for request_id in list(self._tracked):
                    self._abort(request_id, RequestStatus.FINISHED_ABORTED)
                return
            try:
                self._expire_deadlines()
                if self._tracked:
                    self._step()
            except Exception as error:  # a kernel bug must fail requests, not hang them
                logger.exception("engine loop of %s failed", self.model_name)
                for tracked in list(self._tracked.values()):
                    try:
                        self._finish(tracked, RequestStatus.FINISHED_ERROR, error)
                    except Exception:
                        self._tracked.pop(tracked.request.request_id, None)
                        self._emit(
                            tracked.request,
                            RequestDelta(finished=True, finish_reason="error", error=error),
                        )

    def _add(self, request: Request) -> None:
        sampling = request.sampling
        # The guard watches free text. Grammar-constrained output (a JSON schema, tool calls)
        # is bounded by max_tokens instead: cut short by the guard it would be invalid JSON.
        guarded = (
            sampling.repetition_guard and not sampling.ignore_eos and sampling.structured is None
        )
        self._tracked[request.request_id] = _Tracked(
            request,
            IncrementalDetokenizer(self.backend.token_bytes, sampling.stop),
            RepetitionGuard() if guarded else None,
        )
        self.scheduler.add_request(request)

    def _abort(self, request_id: str, status: RequestStatus) -> None:
        tracked = self._tracked.get(request_id)
        if tracked is not None:
            self._finish(tracked, status)

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        for tracked in list(self._tracked.values()):
            deadline = tracked.request.deadline
            if deadline is not None and now > deadline:
                waited = now - tracked.request.arrival_time
                error = RequestTimeoutError(f"the request timed out after {waited:.1f} s")
                self._finish(tracked, RequestStatus.FINISHED_TIMEOUT, error)

    def _step(self) -> None:
        output = self.scheduler.schedule()
        self.metrics.preemptions.labels(self.model_name).inc(len(output.preempted))
        if output.is_empty:
            time.sleep(0.001)  # nothing fits this step (all slots busy finishing); yield
            return
        work = [
            SequenceWork(
                chunk.request.seq_id,
                chunk.request.all_tokens[
                    chunk.request.num_computed_tokens : chunk.request.num_computed_tokens
                    + chunk.num_tokens
                ],
                chunk.sample,
            )
            for chunk in output.chunks
        ]
        try:
            sampled = self.backend.execute(work)
        except Exception as error:  # a failed step fails its requests, not the OS
            logger.exception("step failed on %s", self.model_name)
            for chunk in output.chunks:
                tracked = self._tracked.get(chunk.request.request_id)
                if tracked is not None:
                    self._finish(tracked, RequestStatus.FINISHED_ERROR, error)
            return
        by_seq = {s.seq_id: s for s in sampled}
        self.scheduler.update(output, {s.seq_id: s.token for s in sampled})
        self._account_prompt(output)
        for chunk in output.chunks:
            result = by_seq.get(chunk.request.seq_id)
            tracked = self._tracked.get(chunk.request.request_id)
            if result is not None and tracked is not None and not chunk.request.is_finished:
                self._on_token(tracked, result)
        self._update_gauges()

    def _account_prompt(self, output: SchedulerOutput) -> None:
        for chunk in output.chunks:
            if chunk.request.num_preemptions == 0 and not chunk.request.output_tokens:
                self.metrics.prompt_tokens.labels(self.model_name).inc(chunk.num_tokens)

    def _on_token(self, tracked: _Tracked, sampled: SampledToken) -> None:
        request = tracked.request
        now = time.monotonic()
        params = request.sampling
        if request.first_token_time is None:
            request.first_token_time = now
            self.metrics.time_to_first_token.labels(self.model_name).observe(
                now - request.arrival_time
            )
        elif request.last_token_time is not None:
            self.metrics.inter_token_latency.labels(self.model_name).observe(
                now - request.last_token_time
            )
        request.last_token_time = now
        self.metrics.generation_tokens.labels(self.model_name).inc()
        self.metrics.tenant_tokens.labels(self.model_name, request.tenant, "generation").inc()
        token = sampled.token
        if (
            self.backend.is_end_of_generation(token) and not params.ignore_eos
        ) or token in params.stop_token_ids:
            self._finish(tracked, RequestStatus.FINISHED_STOPPED)
            return
        text = "" if self.backend.is_special(token) else tracked.detokenizer.add(token)
        info = TokenInfo(
            token_id=token,
            text=self.backend.token_bytes(token).decode("utf-8", errors="replace"),
            logprob=sampled.logprob,
            top_logprobs=tuple(
                (self.backend.token_bytes(t.token).decode("utf-8", errors="replace"), t.logprob)
                for t in sampled.top_logprobs
            ),
        )
        self._emit(request, RequestDelta(text=text, tokens=[info]))
        if tracked.detokenizer.stopped:
            self._finish(tracked, RequestStatus.FINISHED_STOPPED)
        elif tracked.guard is not None and tracked.guard.add(token):
            self.metrics.repetition_stops.labels(self.model_name).inc()
            self._finish(tracked, RequestStatus.FINISHED_REPETITION)
        elif len(request.output_tokens) >= request.max_tokens:
            self._finish(tracked, RequestStatus.FINISHED_LENGTH)

    def _finish(
        self, tracked: _Tracked, status: RequestStatus, error: Exception | None = None
    ) -> None:
        request = tracked.request
        del self._tracked[request.request_id]
        if not request.is_finished:
            self.scheduler.finish_request(request, status)
        now = time.monotonic()
        started = request.scheduled_time or now
        first = request.first_token_time or now
        reason = FINISH_REASONS[status]
        self.metrics.e2e_latency.labels(self.model_name).observe(now - request.arrival_time)
        self.metrics.queue_time.labels(self.model_name).observe(started - request.arrival_time)
        self.metrics.request_success.labels(self.model_name, reason).inc()
        self.metrics.prefix_cache_hits.labels(self.model_name).inc(request.num_cached_tokens)
        self.metrics.tenant_tokens.labels(self.model_name, request.tenant, "prompt").inc(
            len(request.prompt_tokens)
        )
        tail = "" if error is not None else tracked.detokenizer.flush()
        self._emit(
            request,
            RequestDelta(
                text=tail,
                finished=True,
                finish_reason=reason,
                stopped_by=STOPPED_BY.get(status),
                error=error,
                num_prompt_tokens=len(request.prompt_tokens),
                num_output_tokens=len(request.output_tokens),
                num_cached_tokens=request.num_cached_tokens,
                queue_seconds=started - request.arrival_time,
                prompt_seconds=first - started,
                generation_seconds=now - first,
            ),
        )
        self._update_gauges()

    def _emit(self, request: Request, delta: RequestDelta) -> None:
        if request.emit is None:
            return
        try:
            request.emit(delta)
        except RuntimeError:
            # the caller's event loop is closed (its server stopped mid-request): nobody can
            # receive the rest, so the request is aborted instead of failing the loop
            request.emit = None
            if not delta.finished:
                self.abort(request.request_id)

    def _update_gauges(self) -> None:
        name = self.model_name
        self.metrics.requests_running.labels(name).set(self.scheduler.num_running)
        self.metrics.requests_waiting.labels(name).set(self.scheduler.num_waiting)
        self.metrics.set_running_per_tenant(name, self.scheduler.running_per_tenant())
        capacity = max(self.kv_cache.capacity_tokens, 1)
        self.metrics.kv_cache_usage.labels(name).set(self.kv_cache.used_tokens / capacity)

    def snapshot(self) -> tuple[int, int]:
        """(running, waiting) for ``ps``."""
        return self.scheduler.num_running, self.scheduler.num_waiting + sum(
            1 for kind, _ in list(self._inbox) if kind == "add"
        )

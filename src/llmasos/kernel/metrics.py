"""Prometheus metrics of the kernel, named as vLLM names them, labelled by ``model_name``.

Dashboards built for vLLM read these unchanged. Metrics vLLM has no name for (evictions,
loads, per-tenant tokens and running requests) carry the ``llmasos:`` prefix. One
`KernelMetrics` per kernel, with its own registry, so tests and several kernels in one
process do not collide.

A tenant is a user name (or, without authentication, any OpenAI ``user`` string), so a
gauge labelled by tenant must not grow a series for every tenant ever seen:
``llmasos:tenant_requests_running`` keeps a series only while its tenant has running
requests, for at most `TENANT_SERIES_LIMIT` tenants per model (the busiest), and counts
the rest under ``tenant="(other)"``.

The job lanes (`llmasos.kernel.lanes`) are labelled by ``kind`` (``transcribe``, ``ocr``,
``speak``): ``llmasos:job_lane_running``, ``llmasos:job_lane_waiting``,
``llmasos:job_seconds`` and ``llmasos:job_lane_jobs`` by outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
_TOKEN_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

TENANT_SERIES_LIMIT: Final = 16
"""Most tenants with their own ``llmasos:tenant_requests_running`` series, per model."""
OTHER_TENANTS: Final = "(other)"
"""The tenant label that counts the running requests of tenants past the limit."""


def bounded_tenants(counts: Mapping[str, int], limit: int = TENANT_SERIES_LIMIT) -> dict[str, int]:
    """``counts`` without zeros, the ``limit`` busiest tenants by name and the rest summed
    under `OTHER_TENANTS` (ties go by name, so the same counts give the same series)."""
    ranked = sorted(((n, t) for t, n in counts.items() if n > 0), key=lambda p: (-p[0], p[1]))
    shown = {tenant: n for n, tenant in ranked[:limit]}
    rest = sum(n for n, _ in ranked[limit:])
    if rest:
        shown[OTHER_TENANTS] = shown.get(OTHER_TENANTS, 0) + rest
    return shown


class KernelMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        model = ["model_name"]
        self.requests_running = Gauge(
            "vllm:num_requests_running", "Requests in the running batch.", model, registry=r
        )
        self.requests_waiting = Gauge(
            "vllm:num_requests_waiting", "Requests waiting to be scheduled.", model, registry=r
        )
        self.kv_cache_usage = Gauge(
            "vllm:kv_cache_usage_perc", "Fraction of the KV cache in use (0-1).", model, registry=r
        )
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens processed.", model, registry=r
        )
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Tokens generated.", model, registry=r
        )
        self.prefix_cache_hits = Counter(
            "vllm:prefix_cache_hits",
            "Prompt tokens served from the prefix cache.",
            model,
            registry=r,
        )
        self.preemptions = Counter("vllm:num_preemptions", "Requests preempted.", model, registry=r)
        self.request_success = Counter(
            "vllm:request_success",
            "Requests finished, by finish reason.",
            [*model, "finished_reason"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from arrival to the first output token.",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            "vllm:inter_token_latency_seconds",
            "Time between consecutive output tokens.",
            model,
            buckets=_TOKEN_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from arrival to the end of a request.",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Time a request waited before its first step.",
            model,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tenant_tokens = Counter(
            "llmasos:tenant_tokens",
            "Tokens served per tenant (prompt and generation).",
            [*model, "tenant", "kind"],
            registry=r,
        )
        self.model_loads = Counter(
            "llmasos:model_loads", "Models loaded into memory.", model, registry=r
        )
        self.model_evictions = Counter(
            "llmasos:model_evictions",
            "Models unloaded, by reason (idle, memory, request).",
            [*model, "reason"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "llmasos:rejected_requests",
            "Requests refused at admission, by reason.",
            [*model, "reason"],
            registry=r,
        )
        self.repetition_stops = Counter(
            "llmasos:repetition_stops",
            "Replies stopped by the repetition guard (they looped).",
            model,
            registry=r,
        )
        self.resident_memory = Gauge(
            "llmasos:model_memory_bytes", "Memory held by a resident model.", model, registry=r
        )
        self.tenant_requests_running = Gauge(
            "llmasos:tenant_requests_running",
            f"Requests in the running batch per tenant (the {TENANT_SERIES_LIMIT} busiest "
            f"tenants of a model; the rest as tenant={OTHER_TENANTS!r}; idle tenants have "
            "no series).",
            [*model, "tenant"],
            registry=r,
        )
        self._tenant_series: dict[str, set[str]] = {}
        kind = ["kind"]
        self.lane_running = Gauge(
            "llmasos:job_lane_running", "Jobs running in a job lane.", kind, registry=r
        )
        self.lane_waiting = Gauge(
            "llmasos:job_lane_waiting", "Jobs waiting in a job lane.", kind, registry=r
        )
        self.lane_job_seconds = Counter(
            "llmasos:job_seconds", "Seconds of work run by a job lane.", kind, registry=r
        )
        self.lane_jobs = Counter(
            "llmasos:job_lane_jobs",
            "Jobs of a job lane by outcome (done, error, cancelled while waiting, rejected "
            "because the lane was full).",
            [*kind, "outcome"],
            registry=r,
        )

    def set_running_per_tenant(self, model_name: str, counts: Mapping[str, int]) -> None:
        """Publish how many running requests each tenant has on ``model_name``: the series
        of tenants that no longer run anything are removed (see `bounded_tenants`). Called
        only from that model's engine thread."""
        shown = bounded_tenants(counts)
        gauge = self.tenant_requests_running
        for tenant in self._tenant_series.get(model_name, set()) - shown.keys():
            gauge.remove(model_name, tenant)
        for tenant, running in shown.items():
            gauge.labels(model_name, tenant).set(running)
        self._tenant_series[model_name] = set(shown)

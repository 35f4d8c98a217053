"""Prometheus metrics of the kernel, named as vLLM names them, labelled by ``model_name``.

Dashboards built for vLLM read these unchanged. Metrics vLLM has no name for (evictions,
loads, per-tenant tokens) carry the ``llmasos:`` prefix. One `KernelMetrics` per kernel,
with its own registry, so tests and several kernels in one process do not collide.
"""

from __future__ import annotations

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

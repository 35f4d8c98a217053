"""Scripted serving scenarios: tenant fairness under a flood, and a bounded soak test.

`run_fairness`: tenant B's time to first token on an idle server (median of a few probes,
after one warm-up request), then again while tenant A has ``flood`` long requests in flight.
The ratio loaded/idle is the figure of merit; a fair-share scheduler keeps it small
(target: <= 3x). `run_soak`: ``clients`` closed-loop clients for ``duration_s`` seconds
(and at most ``max_requests`` requests), counting completions, 503s and other failures, and
sampling the server's resident memory once a second when its pid is known.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from llmasos.bench.metrics import Distribution, RequestResult
from llmasos.bench.peers import rss_bytes
from llmasos.bench.serve import LoadConfig, Target, new_client, stream_chat
from llmasos.bench.workloads import BenchRequest, chat_workload
from llmasos.errors import InvalidRequestError

FAIRNESS_TARGET_RATIO = 3.0
TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
PROBE_COUNTRIES = ("France", "Japan", "Italy", "Spain", "Egypt", "Canada", "Peru", "Kenya")
"""Each probe asks about a different country, so no probe reuses another's cached prefix."""


@dataclass
class FairnessReport:
    label: str
    idle_ttft_ms: float
    loaded_ttft_ms: float
    flood_requests: int
    flood_completed: int
    flood_output_tokens: int
    probe_ok: bool

    @property
    def ratio(self) -> float:
        return self.loaded_ttft_ms / self.idle_ttft_ms if self.idle_ttft_ms > 0 else float("inf")

    @property
    def passed(self) -> bool:
        return self.probe_ok and self.ratio <= FAIRNESS_TARGET_RATIO

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "idle_ttft_ms": self.idle_ttft_ms,
            "loaded_ttft_ms": self.loaded_ttft_ms,
            "ratio": self.ratio,
            "target_ratio": FAIRNESS_TARGET_RATIO,
            "passed": self.passed,
            "flood_requests": self.flood_requests,
            "flood_completed": self.flood_completed,
            "flood_output_tokens": self.flood_output_tokens,
        }


def _probe(index: int) -> BenchRequest:
    country = PROBE_COUNTRIES[index % len(PROBE_COUNTRIES)]
    question = f"What is the capital of {country}? Answer in one word."
    return BenchRequest(
        messages=[{"role": "user", "content": question}],
        max_tokens=8,
        kind="probe",
        user=TENANT_B,
    )


def _flood(count: int, output_len: int) -> list[BenchRequest]:
    prompt = "Write a long story about a lighthouse keeper. Describe every scene in detail."
    return [
        BenchRequest(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=output_len,
            kind="flood",
            user=TENANT_A,
        )
        for _ in range(count)
    ]


async def _fairness(
    target: Target, config: LoadConfig, flood: int, output_len: int, delay_s: float, probes: int
) -> FairnessReport:
    async with new_client(flood + 2, config.timeout_s) as client:
        origin = time.perf_counter()
        await stream_chat(client, target, _probe(0), config, origin)  # warm-up
        idle: list[float] = []
        for index in range(1, probes + 1):
            result = await stream_chat(client, target, _probe(index), config, origin)
            if not result.ok or result.ttft is None:
                raise InvalidRequestError(f"{target.label}: idle probe failed: {result.error}")
            idle.append(result.ttft)
        flood_config = LoadConfig(
            concurrency=0,
            seed=config.seed,
            temperature=config.temperature,
            ignore_eos=True,
            timeout_s=config.timeout_s,
        )
        tasks = [
            asyncio.create_task(stream_chat(client, target, r, flood_config, origin))
            for r in _flood(flood, output_len)
        ]
        await asyncio.sleep(delay_s)
        probe = await stream_chat(client, target, _probe(probes + 1), config, origin)
        flood_results: list[RequestResult] = list(await asyncio.gather(*tasks))
    return FairnessReport(
        label=target.label,
        idle_ttft_ms=statistics.median(idle) * 1000,
        loaded_ttft_ms=(probe.ttft or probe.latency) * 1000,
        flood_requests=flood,
        flood_completed=sum(r.ok for r in flood_results),
        flood_output_tokens=sum(r.output_tokens for r in flood_results if r.ok),
        probe_ok=probe.ok,
    )


def run_fairness(
    target: Target,
    config: LoadConfig,
    *,
    flood: int = 16,
    output_len: int = 256,
    delay_s: float = 1.0,
    probes: int = 3,
) -> FairnessReport:
    """Tenant B's TTFT idle vs. under tenant A's flood of ``flood`` long requests."""
    if flood < 1 or probes < 1:
        raise InvalidRequestError("the fairness flood and probe counts must be >= 1")
    return asyncio.run(_fairness(target, config, flood, output_len, delay_s, probes))


@dataclass
class SoakReport:
    label: str
    clients: int
    duration_s: float
    completed: int
    rejected_503: int
    other_errors: dict[str, int]
    latency: Distribution
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every request either completed or got a clear 503."""
        return not self.other_errors

    def to_dict(self) -> dict[str, Any]:
        rss = [b for _, b in self.rss_samples]
        memory: dict[str, Any] | None = None
        if rss:
            memory = {
                "start_mib": rss[0] / 2**20,
                "end_mib": rss[-1] / 2**20,
                "max_mib": max(rss) / 2**20,
                "growth_percent": (rss[-1] - rss[0]) / rss[0] * 100 if rss[0] else None,
                "samples": [[round(t, 2), b] for t, b in self.rss_samples],
            }
        return {
            "label": self.label,
            "clients": self.clients,
            "duration_s": self.duration_s,
            "completed": self.completed,
            "rejected_503": self.rejected_503,
            "other_errors": self.other_errors,
            "passed": self.passed,
            "e2e_ms": self.latency.to_dict(),
            "memory": memory,
        }


async def _soak(
    target: Target,
    config: LoadConfig,
    clients: int,
    duration_s: float,
    max_requests: int,
    output_len: int,
) -> SoakReport:
    workload = chat_workload(max(clients, 64), output_len, config.seed)
    results: list[RequestResult] = []
    samples: list[tuple[float, int]] = []
    sent = 0
    origin = time.perf_counter()
    deadline = origin + duration_s

    def sample() -> None:
        if target.pid is not None and (rss := rss_bytes(target.pid)) is not None:
            samples.append((time.perf_counter() - origin, rss))

    async def client_loop(client_index: int, http: Any) -> None:
        nonlocal sent
        turn = 0
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            request = workload[(client_index + turn * clients) % len(workload)]
            turn += 1
            result = await stream_chat(http, target, request, config, origin)
            results.append(result)
            if result.status == 503:
                await asyncio.sleep(0.5)  # a polite client backs off before retrying

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(1.0)

    sample()
    async with new_client(clients, config.timeout_s) as http:
        sampling = asyncio.create_task(sampler())
        await asyncio.gather(*(client_loop(i, http) for i in range(clients)))
        sampling.cancel()
    sample()
    others: dict[str, int] = {}
    for r in results:
        if not r.ok and r.status != 503:
            key = (r.error or "unknown").split(":", 1)[0]
            others[key] = others.get(key, 0) + 1
    return SoakReport(
        label=target.label,
        clients=clients,
        duration_s=time.perf_counter() - origin,
        completed=sum(r.ok for r in results),
        rejected_503=sum(1 for r in results if r.status == 503),
        other_errors=others,
        latency=Distribution.of_seconds([r.latency for r in results if r.ok]),
        rss_samples=samples,
    )


def run_soak(
    target: Target,
    config: LoadConfig,
    *,
    clients: int = 64,
    duration_s: float = 120.0,
    max_requests: int | None = None,
    output_len: int = 64,
) -> SoakReport:
    """``clients`` closed-loop clients for ``duration_s`` (bounded by ``max_requests``)."""
    if clients < 1 or duration_s <= 0:
        raise InvalidRequestError("--clients must be >= 1 and --duration > 0")
    cap = max_requests if max_requests is not None else clients * 100
    return asyncio.run(_soak(target, config, clients, duration_s, cap, output_len))

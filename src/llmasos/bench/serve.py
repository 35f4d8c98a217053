"""Load generator for any OpenAI-compatible ``/v1/chat/completions`` server.

`run_benchmark` sends a workload (`llmasos.bench.workloads`) as streaming chat requests over
httpx with at most ``concurrency`` in flight and Poisson arrivals at ``request_rate`` per
second (``inf``: all at once), timing every content chunk (`stream_chat`), and summarizes
the run (`llmasos.bench.metrics`). Output tokens come from the final usage chunk
(``stream_options.include_usage``) when the server sends one, else one per content chunk.
Only the OpenAI wire format is assumed, so LLMasOS and its peers are measured the same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from llmasos.bench.metrics import SLO, BenchmarkSummary, RequestResult, summarize
from llmasos.bench.workloads import BenchRequest
from llmasos.errors import InvalidRequestError

ProgressCallback = Callable[[RequestResult], None]


@dataclass(frozen=True)
class Target:
    """A server to measure: a label for reports, its base URL, the model name to ask for."""

    label: str
    base_url: str
    model: str | None = None
    pid: int | None = None
    """The server's process id when known (for memory sampling)."""

    @property
    def chat_url(self) -> str:
        base = self.base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return f"{base}/chat/completions"


STRUCTURED: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "notes",
        "schema": {
            "type": "object",
            "properties": {"notes": {"type": "array", "items": {"type": "string"}, "minItems": 32}},
            "required": ["notes"],
            "additionalProperties": False,
        },
    },
}
"""``bench serve --structured``: a list of at least 32 strings, so a reply runs to
``max_tokens`` (128 or so) as an unconstrained one does, every token under the grammar; without
the lower bound a small model closes the list after a few items."""


@dataclass(frozen=True)
class LoadConfig:
    """How to send a workload."""

    concurrency: int = 4
    """Most requests in flight at once; 0 means no limit."""
    request_rate: float = math.inf
    """Mean new requests per second (Poisson arrivals); inf sends them all at once."""
    seed: int = 0
    temperature: float | None = 0.0
    """Sent with every request (None: the server's default)."""
    ignore_eos: bool = False
    """Ask for exactly ``max_tokens`` (``ignore_eos`` and ``min_tokens``, vLLM extensions)."""
    timeout_s: float = 600.0
    """Per-request limit; a request past it counts as failed."""
    response_format: dict[str, Any] | None = None
    """Sent with every request: structured output (`STRUCTURED`) when set."""

    def check(self) -> None:
        if self.concurrency < 0:
            raise InvalidRequestError("--concurrency must be >= 0 (0: no limit)")
        if not self.request_rate > 0:
            raise InvalidRequestError("--request-rate must be > 0 (or inf)")
        if not self.timeout_s > 0:
            raise InvalidRequestError("the request timeout must be > 0")
        if self.response_format is not None and self.ignore_eos:
            raise InvalidRequestError(
                "--structured ends where the schema's JSON ends: drop --ignore-eos"
            )


def request_body(target: Target, request: BenchRequest, config: LoadConfig) -> dict[str, Any]:
    """The JSON body of one streaming chat request."""
    body: dict[str, Any] = {
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.model:
        body["model"] = target.model
    if config.temperature is not None:
        body["temperature"] = config.temperature
    if config.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = request.max_tokens
    if config.response_format is not None:
        body["response_format"] = config.response_format
    if request.user:
        body["user"] = request.user
    body.update(request.extra)
    return body


def new_client(connections: int, timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client for local benchmark traffic (no proxies from the environment)."""
    limits = httpx.Limits(max_connections=connections + 4, max_keepalive_connections=connections)
    timeout = httpx.Timeout(timeout_s, connect=30.0)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))[:200]
    return str(data)[:200]


async def stream_chat(
    client: httpx.AsyncClient,
    target: Target,
    request: BenchRequest,
    config: LoadConfig,
    origin: float,
) -> RequestResult:
    """Send one streaming request and time its chunks; never raises for server failures."""
    body = request_body(target, request, config)
    start = time.perf_counter() - origin
    result = RequestResult(ok=False, start=start, end=start, user=request.user)
    chunks = 0
    try:
        async with asyncio.timeout(config.timeout_s):
            async with client.stream("POST", target.chat_url, json=body) as response:
                result.status = response.status_code
                if response.status_code != 200:
                    raw = await response.aread()
                    result.error = f"http {response.status_code}: {_error_message(raw)}"
                    result.end = time.perf_counter() - origin
                    return result
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    data = json.loads(payload)
                    now = time.perf_counter() - origin
                    if "error" in data:
                        result.error = f"stream error: {_error_message(payload.encode())}"
                        result.end = now
                        return result
                    for choice in data.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            result.chunk_times.append(now)
                            chunks += 1
                    usage = data.get("usage")
                    if usage:
                        result.output_tokens = int(usage.get("completion_tokens", 0))
                        result.prompt_tokens = int(usage.get("prompt_tokens", 0))
                        result.tokens_from_usage = True
    except TimeoutError:
        result.error = f"timeout: no complete answer within {config.timeout_s:g} s"
    except (httpx.HTTPError, ValueError) as error:
        result.error = f"{type(error).__name__}: {error}"
    result.end = time.perf_counter() - origin
    if result.error is None:
        if not result.tokens_from_usage:
            result.output_tokens = chunks
        result.ok = True
    return result


def arrival_delays(count: int, request_rate: float, seed: int) -> list[float]:
    """Gaps before each request: exponential with mean 1/rate (all zero for inf)."""
    if math.isinf(request_rate):
        return [0.0] * count
    rng = random.Random(f"arrivals-{seed}")
    return [rng.expovariate(request_rate) for _ in range(count)]


async def run_load(
    target: Target,
    requests: Sequence[BenchRequest],
    config: LoadConfig,
    progress: ProgressCallback | None = None,
) -> tuple[list[RequestResult], float]:
    """Send every request; returns the results (in workload order) and the wall duration."""
    config.check()
    limit = config.concurrency or len(requests)
    semaphore = asyncio.Semaphore(max(limit, 1))
    origin = time.perf_counter()

    async with new_client(max(limit, 1), config.timeout_s) as client:

        async def one(request: BenchRequest) -> RequestResult:
            async with semaphore:
                result = await stream_chat(client, target, request, config, origin)
            if progress is not None:
                progress(result)
            return result

        tasks: list[asyncio.Task[RequestResult]] = []
        for request, delay in zip(
            requests, arrival_delays(len(requests), config.request_rate, config.seed), strict=True
        ):
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request)))
        results = list(await asyncio.gather(*tasks))
    duration = max((r.end for r in results), default=0.0)
    return results, duration


def run_benchmark(
    target: Target,
    requests: Sequence[BenchRequest],
    config: LoadConfig,
    slo: SLO | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[BenchmarkSummary, list[RequestResult]]:
    """Run a workload against one server and summarize it (blocking)."""
    results, duration = asyncio.run(run_load(target, requests, config, progress))
    return summarize(target.label, results, duration, slo), results

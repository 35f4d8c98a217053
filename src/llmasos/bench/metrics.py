"""Serving metrics from per-request timings: TTFT, TPOT, ITL, E2E, throughput and goodput.

Definitions follow ``vllm bench serve``. A `RequestResult` holds, in seconds since the run
started, when the request was sent and when each non-empty content chunk arrived.

- TTFT: first content chunk minus send time.
- TPOT: (E2E - TTFT) / (output tokens - 1), per request with at least two output tokens.
- ITL: gaps between consecutive content chunks, pooled over all requests.
- E2E: end of the stream minus send time.
- Goodput: completed requests meeting every given SLO (TTFT, TPOT), per second of the run.

Percentiles interpolate linearly between order statistics (numpy's default). Reported
latencies are milliseconds. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


@dataclass
class RequestResult:
    """What one streamed request did; times are seconds since the run began."""

    ok: bool
    start: float
    end: float
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    tokens_from_usage: bool = False
    status: int | None = None
    error: str | None = None
    user: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] - self.start if self.chunk_times else None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first (None with fewer than two tokens)."""
        ttft = self.ttft
        if ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - ttft) / (self.output_tokens - 1)

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:], strict=False)]


@dataclass(frozen=True)
class SLO:
    """Service-level objectives in milliseconds; None means "no objective"."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def given(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None

    def met_by(self, result: RequestResult) -> bool:
        if not result.ok:
            return False
        ttft = result.ttft
        if self.ttft_ms is not None and (ttft is None or ttft * 1000 > self.ttft_ms):
            return False
        tpot = result.tpot
        return not (self.tpot_ms is not None and tpot is not None and tpot * 1000 > self.tpot_ms)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0-100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Summary of a latency distribution in milliseconds (NaN when there were no samples)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> Distribution:
        ms = [s * 1000.0 for s in seconds]
        if not ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            count=len(ms),
            mean=sum(ms) / len(ms),
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            max=max(ms),
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass
class BenchmarkSummary:
    """The report of one run against one server."""

    label: str
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int | None
    """None when the server reported no usage (prompt size unknown)."""
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_throughput: float | None
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2e: Distribution
    goodput: float | None
    slo: SLO
    output_tokens_source: str
    errors: dict[str, int]
    timeline: list[float] = field(default_factory=list)
    """Output tokens per second in consecutive one-second bins."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "completed": self.completed,
            "failed": self.failed,
            "duration_s": self.duration_s,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_throughput": self.total_throughput,
            "ttft_ms": self.ttft.to_dict(),
            "tpot_ms": self.tpot.to_dict(),
            "itl_ms": self.itl.to_dict(),
            "e2e_ms": self.e2e.to_dict(),
            "goodput": self.goodput,
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms},
            "output_tokens_source": self.output_tokens_source,
            "errors": self.errors,
            "timeline_output_tok_s": self.timeline,
        }


def error_key(result: RequestResult) -> str:
    """A short class for a failure: ``http 503``, ``stream error`` or the exception type."""
    if result.status is not None and result.status != 200:
        return f"http {result.status}"
    return (result.error or "unknown").split(":", 1)[0]


def throughput_timeline(results: Sequence[RequestResult], bin_s: float = 1.0) -> list[float]:
    """Output tokens per second per ``bin_s`` bin; a request's tokens spread over its chunks."""
    bins: Counter[int] = Counter()
    for result in results:
        if not result.ok or not result.chunk_times:
            continue
        per_chunk = result.output_tokens / len(result.chunk_times)
        for t in result.chunk_times:
            bins[int(t // bin_s)] += per_chunk  # type: ignore[assignment]
    if not bins:
        return []
    return [bins.get(i, 0) / bin_s for i in range(max(bins) + 1)]


def summarize(
    label: str, results: Sequence[RequestResult], duration_s: float, slo: SLO | None = None
) -> BenchmarkSummary:
    """Aggregate one run's results; ``duration_s`` is wall time from first send to last end."""
    slo = slo or SLO()
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    duration = max(duration_s, 1e-9)
    known_input = all(r.prompt_tokens is not None for r in done)
    input_tokens = sum(r.prompt_tokens or 0 for r in done) if known_input else None
    output_tokens = sum(r.output_tokens for r in done)
    from_usage = [r.tokens_from_usage for r in done]
    source = "usage" if all(from_usage) else "chunks" if not any(from_usage) else "mixed"
    ttfts = [t for r in done if (t := r.ttft) is not None]
    tpots = [t for r in done if (t := r.tpot) is not None]
    itls = [gap for r in done for gap in r.itls]
    goodput = sum(1 for r in done if slo.met_by(r)) / duration if slo.given else None
    return BenchmarkSummary(
        label=label,
        completed=len(done),
        failed=len(failed),
        duration_s=duration_s,
        total_input_tokens=input_tokens,
        total_output_tokens=output_tokens,
        request_throughput=len(done) / duration,
        output_throughput=output_tokens / duration,
        total_throughput=(
            (input_tokens + output_tokens) / duration if input_tokens is not None else None
        ),
        ttft=Distribution.of_seconds(ttfts),
        tpot=Distribution.of_seconds(tpots),
        itl=Distribution.of_seconds(itls),
        e2e=Distribution.of_seconds([r.latency for r in done]),
        goodput=goodput,
        slo=slo,
        output_tokens_source=source,
        errors=dict(Counter(error_key(r) for r in failed)),
        timeline=throughput_timeline(done),
    )

"""PNG charts of serving benchmark runs (matplotlib, Agg backend; imported lazily).

`plot_runs` draws, for one or more servers measured on the same workload: TTFT and ITL
cumulative distributions, output tokens per second over time, and side-by-side bars of
throughput and median latencies (a metric a run has no samples of is labelled n/a, not
drawn as 0). Every run is a `BenchmarkSummary` and its `RequestResult`s, so the in-process
``raw-loop`` reference draws like a server. matplotlib is optional: without it, `plot_runs`
raises `BackendUnavailableError` with the install hint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmasos.bench.metrics import BenchmarkSummary, RequestResult
from llmasos.errors import BackendUnavailableError, StorageError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise BackendUnavailableError("--plot needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf(axis: Any, values_ms: Sequence[float], label: str) -> None:
    if not values_ms:
        return
    ordered = sorted(values_ms)
    if ordered[0] > 0 and ordered[-1] / ordered[0] > 50:
        axis.set_xscale("log")  # a few long stalls would squash the body of the curve
    fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
    axis.step(ordered, fractions, where="post", label=label)


def _bars(axis: Any, summaries: Sequence[BenchmarkSummary]) -> None:
    metrics: list[tuple[str, Callable[[BenchmarkSummary], float]]] = [
        ("output tok/s", lambda s: s.output_throughput),
        ("req/s x10", lambda s: s.request_throughput * 10),
        ("TTFT p50 ms", lambda s: s.ttft.p50),
        ("TPOT p50 ms", lambda s: s.tpot.p50),
        ("ITL p50 ms", lambda s: s.itl.p50),
    ]
    width = 0.8 / max(len(summaries), 1)
    for index, summary in enumerate(summaries):
        values = [value(summary) for _, value in metrics]
        heights = [0.0 if math.isnan(v) else v for v in values]
        positions = [m + index * width for m in range(len(metrics))]
        bars = axis.bar(positions, heights, width=width, label=summary.label)
        labels = ["n/a" if math.isnan(v) else f"{v:.1f}" for v in values]
        axis.bar_label(bars, labels=labels, fontsize=7)
    axis.set_xticks([m + width * (len(summaries) - 1) / 2 for m in range(len(metrics))])
    axis.set_xticklabels([name for name, _ in metrics], fontsize=8)
    axis.set_title("Throughput and median latency")
    axis.legend(fontsize=8)


def plot_runs(
    runs: Sequence[tuple[BenchmarkSummary, Sequence[RequestResult]]],
    path: Path,
    title: str = "",
) -> Path:
    """Write a 2x2 chart of ``runs`` (one per server) to ``path``; returns the path."""
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    ttft_axis, itl_axis, time_axis, bar_axis = axes.flat
    for summary, results in runs:
        done = [r for r in results if r.ok]
        _cdf(ttft_axis, [t * 1000 for r in done if (t := r.ttft) is not None], summary.label)
        _cdf(itl_axis, [g * 1000 for r in done for g in r.itls], summary.label)
        seconds = list(range(len(summary.timeline)))
        time_axis.plot(seconds, summary.timeline, marker=".", label=summary.label)
    for axis, name in ((ttft_axis, "TTFT"), (itl_axis, "Inter-token latency")):
        axis.set_title(f"{name} CDF")
        axis.set_xlabel("ms")
        axis.set_ylabel("fraction of samples")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    time_axis.set_title("Output tokens per second over the run")
    time_axis.set_xlabel("second of run")
    time_axis.set_ylabel("tok/s")
    time_axis.grid(alpha=0.3)
    time_axis.legend(fontsize=8)
    _bars(bar_axis, [summary for summary, _ in runs])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise StorageError(f"cannot write the plot {path}: {error}") from None
    finally:
        plt.close(figure)
    return path


def plot_fairness(reports: Sequence[Any], path: Path) -> Path:
    """Bars of tenant B's idle and loaded TTFT per server (reports: `FairnessReport`)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.35
    positions = list(range(len(reports)))
    idle = axis.bar([p - width / 2 for p in positions], [r.idle_ttft_ms for r in reports], width)
    loaded = axis.bar(
        [p + width / 2 for p in positions], [r.loaded_ttft_ms for r in reports], width
    )
    idle.set_label("idle")
    loaded.set_label("under tenant A's flood")
    axis.bar_label(idle, fmt="%.0f", fontsize=8)
    axis.bar_label(loaded, fmt="%.0f", fontsize=8)
    axis.set_xticks(positions)
    axis.set_xticklabels([f"{r.label}\n(x{r.ratio:.1f})" for r in reports])
    axis.set_ylabel("tenant B TTFT (ms)")
    axis.set_title("Fairness: a short request during another tenant's flood")
    axis.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise StorageError(f"cannot write the plot {path}: {error}") from None
    finally:
        plt.close(figure)
    return path

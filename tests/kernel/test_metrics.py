"""The kernel's Prometheus metrics: the per-tenant running gauge keeps its label set bounded."""

from __future__ import annotations

from llmasos.kernel.metrics import (
    OTHER_TENANTS,
    TENANT_SERIES_LIMIT,
    KernelMetrics,
    bounded_tenants,
)


def series(metrics: KernelMetrics) -> dict[str, float]:
    return {
        sample.labels["tenant"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "llmasos:tenant_requests_running"
        for sample in family.samples
    }


def test_the_busiest_tenants_get_a_series_and_the_rest_count_as_other() -> None:
    counts = {f"user{n:02}": 1 for n in range(TENANT_SERIES_LIMIT + 4)}
    counts["heavy"] = 5
    counts["idle"] = 0
    shown = bounded_tenants(counts)
    assert len(shown) == TENANT_SERIES_LIMIT + 1
    assert shown["heavy"] == 5 and "idle" not in shown
    assert shown[OTHER_TENANTS] == 5  # the 5 one-request tenants past the limit, by name
    assert sum(shown.values()) == sum(counts.values())
    assert bounded_tenants({"a": 2, "b": 1}) == {"a": 2, "b": 1}


def test_a_tenant_keeps_its_series_only_while_it_runs_requests() -> None:
    metrics = KernelMetrics()
    metrics.set_running_per_tenant("m", {"alice": 2, "bob": 1})
    assert series(metrics) == {"alice": 2.0, "bob": 1.0}
    metrics.set_running_per_tenant("m", {"bob": 3})
    assert series(metrics) == {"bob": 3.0}
    metrics.set_running_per_tenant("m", {})
    assert series(metrics) == {}
    many = {f"t{n}": 1 for n in range(200)}
    metrics.set_running_per_tenant("m", many)
    assert len(series(metrics)) == TENANT_SERIES_LIMIT + 1

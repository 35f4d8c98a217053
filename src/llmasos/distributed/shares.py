"""The cluster's fair-share ledger: one Virtual Token Counter per tenant for every API server.

Each API server routes its own requests (`ClusterRouter`), and its fair queue orders waiting
tenants by their counters. With one server those counters are global across replicas; with
several (one per core, or on several hosts), a tenant could spread its requests over the
servers and be served as a newcomer by each. So every server exchanges with one ledger on
the head, a detached named actor in LLMasOS's Ray namespace: it sends the weighted charges
its router made since the last exchange and gets back the totals of every server, which its
router adopts (`ClusterRouter.merge_shares`). The exchange rides on the client's periodic
look at the cluster (every few seconds), so a tenant's service on another server counts
here within one period; the ledger only adds, so a lost reply is made good by the next one,
and charges that could not be sent are sent later (`restore_charges`). A restarted head
starts a new ledger with empty counters, as a restarted single server would.
"""

from __future__ import annotations

from typing import Any

import ray

from llmasos.distributed.replica import NAMESPACE

LEDGER_NAME = "llmasos-fair-share"
HEAD_RESOURCE = "node:__internal_head__"
"""A resource only the head node has: asking for a sliver of it places the ledger there."""


class ShareTotals:
    """Model -> tenant -> weighted tokens served, summed over every API server."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}
        self.servers: set[str] = set()

    def exchange(
        self, server: str, charges: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        """Add ``server``'s charges since its last exchange; every model's totals."""
        self.servers.add(server)
        for model, by_tenant in charges.items():
            totals = self.totals.setdefault(model, {})
            for tenant, weighted in by_tenant.items():
                totals[tenant] = totals.get(tenant, 0.0) + weighted
        return {model: dict(totals) for model, totals in self.totals.items()}

    def status(self) -> dict[str, Any]:
        return {"servers": sorted(self.servers), "totals": self.totals}


FairShareLedger = ray.remote(ShareTotals)
"""The ledger as an actor (one call at a time, so no lock)."""


def ledger() -> Any:
    """The cluster's ledger actor, created on the head node at first use."""
    try:
        return ray.get_actor(LEDGER_NAME, namespace=NAMESPACE)
    except ValueError:
        return FairShareLedger.options(
            name=LEDGER_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources={HEAD_RESOURCE: 0.001},
        ).remote()


def exchange(handle: Any, server: str, charges: dict[str, dict[str, float]], timeout: float) -> Any:
    """One blocking exchange with the ledger (run it off the event loop)."""
    return ray.get(handle.exchange.remote(server, charges), timeout=timeout)

"""The kernel's fair-share ledger: one Virtual Token Counter per tenant, for the whole kernel.

Every model's `FairPolicy` and every job lane (`llmasos.kernel.lanes`) charge and read the
same `TenantShares`, so service a tenant received anywhere counts against it everywhere:
tokens on one model, tokens on another, seconds of OCR or transcription (converted to
tokens by the ``job_tokens_per_second`` setting). A counter only grows; a tenant that
becomes backlogged somewhere is `lift`-ed to the least counter of the tenants already
backlogged there, so time spent idle banks no credit.

Engine threads (token steps) and the event loop (job lanes) touch it at once: every
read-modify-write holds a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class TenantShares:
    """Per-tenant counters of weighted service, in tokens (an unknown tenant has 0)."""

    def __init__(self) -> None:
        self._counters: dict[str, float] = {}
        self._lock = threading.Lock()

    def __getitem__(self, tenant: str) -> float:
        return self._counters.get(tenant, 0.0)

    def charge(self, tenant: str, tokens: float) -> None:
        """Add ``tokens`` of service (already divided by the tenant's weight)."""
        with self._lock:
            self._counters[tenant] = self._counters.get(tenant, 0.0) + tokens

    def lift(self, tenant: str, backlogged: Iterable[str]) -> None:
        """Raise a newly backlogged tenant's counter to the least counter among the
        ``backlogged`` tenants it joins (none: nothing changes)."""
        with self._lock:
            floor = min((self._counters.get(t, 0.0) for t in backlogged), default=None)
            if floor is not None and floor > self._counters.get(tenant, 0.0):
                self._counters[tenant] = floor

    def snapshot(self) -> dict[str, float]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counters)

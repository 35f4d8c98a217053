"""When a deployment grows or shrinks: the autoscaling policy, pure logic (no Ray, no clock).

The signal is queue depth: the requests a deployment has on its replicas (running or waiting
in their kernels) plus those waiting for a slot in the API servers' routers (the router
gives a replica no more than its batch size, so the real queue is there). The policy is
Ray Serve's (``target_ongoing_requests``, ``upscale_delay_s``, ``downscale_delay_s``,
``min_replicas``/``max_replicas``) with an explicit hysteresis band:

- grow by one when the load has stayed above ``target`` requests per replica for
  ``upscale_delay`` seconds;
- shrink by one when the load has stayed at or below ``downscale_fraction`` of what one
  replica fewer could take for ``downscale_delay`` seconds (the idle cool-down);
- after any change, no other change for ``cooldown`` seconds (a new replica must show up in
  the routers before its effect on the queue can be judged).

The load between the two thresholds changes nothing, so a steady load never makes the
deployment flap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from llmasos.errors import ClusterError


@dataclass(frozen=True)
class AutoscalePolicy:
    """Bounds and timing of one deployment's autoscaling (``llmasos deploy --min/--max``)."""

    min_replicas: int
    max_replicas: int
    target: float = 0.0
    """Requests per replica the deployment aims at; 0 means the replica's batch size."""
    upscale_delay: float = 5.0
    downscale_delay: float = 60.0
    cooldown: float = 10.0
    downscale_fraction: float = 0.5
    interval: float = 1.0
    """Seconds between two looks at the queue."""
    drain_timeout: float = 600.0
    """How long a draining replica may take to finish its requests before it is stopped."""

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ClusterError(
                "--min must be at least 1: a deployment does not scale to zero replicas"
            )
        if self.max_replicas < self.min_replicas:
            raise ClusterError(f"--max ({self.max_replicas}) is below --min ({self.min_replicas})")
        if not 0 < self.downscale_fraction <= 1:
            raise ClusterError("downscale_fraction must be in (0, 1]")
        if min(self.upscale_delay, self.downscale_delay, self.cooldown) < 0:
            raise ClusterError("autoscaling delays cannot be negative")
        if self.interval <= 0:
            raise ClusterError("the autoscaling interval must be positive")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Autoscaler:
    """The decisions of one deployment: feed it the load at each look, act on the answer."""

    def __init__(self, policy: AutoscalePolicy, *, capacity: int, now: float) -> None:
        self.policy = policy
        self.target = policy.target if policy.target > 0 else float(max(1, capacity))
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._changed_at = now

    def decide(self, replicas: int, load: float, now: float) -> int:
        """The replica count to move to (``replicas`` when nothing should change)."""
        policy = self.policy
        if replicas != policy.clamp(replicas):  # bounds changed, or replicas died
            return self._changed(policy.clamp(replicas), now)
        above = load > replicas * self.target
        below = replicas > 1 and load <= (replicas - 1) * self.target * policy.downscale_fraction
        if not above:
            self._above_since = None
        elif self._above_since is None:
            self._above_since = now
        if not below:
            self._below_since = None
        elif self._below_since is None:
            self._below_since = now
        if now - self._changed_at < policy.cooldown:
            return replicas
        if (
            above
            and replicas < policy.max_replicas
            and self._above_since is not None
            and now - self._above_since >= policy.upscale_delay
        ):
            return self._changed(replicas + 1, now)
        if (
            below
            and replicas > policy.min_replicas
            and self._below_since is not None
            and now - self._below_since >= policy.downscale_delay
        ):
            return self._changed(replicas - 1, now)
        return replicas

    def _changed(self, replicas: int, now: float) -> int:
        self._changed_at = now
        self._above_since = self._below_since = None
        return replicas

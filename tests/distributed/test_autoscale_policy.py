"""The autoscaling policy alone (no Ray, a fake clock): delays, cool-down, hysteresis, bounds."""

from __future__ import annotations

import pytest

from llmasos.distributed.autoscale import AutoscalePolicy, Autoscaler
from llmasos.errors import ClusterError


def scaler(**changes: float) -> Autoscaler:
    options = {"upscale_delay": 2.0, "downscale_delay": 10.0, "cooldown": 5.0} | changes
    return Autoscaler(AutoscalePolicy(1, 3, **options), capacity=4, now=0.0)


def test_grows_only_after_the_overload_lasts_the_upscale_delay() -> None:
    auto = scaler(cooldown=0.0)
    assert auto.decide(1, 9, now=1.0) == 1  # overloaded, but only just
    assert auto.decide(1, 9, now=2.5) == 1
    assert auto.decide(1, 9, now=3.0) == 2  # 2 s of load above 4 per replica
    assert auto.decide(2, 9, now=4.0) == 2  # the clock starts again for the next step


def test_a_dip_restarts_the_delay() -> None:
    auto = scaler(cooldown=0.0)
    auto.decide(1, 9, now=1.0)
    auto.decide(1, 3, now=2.0)  # back under the target
    assert auto.decide(1, 9, now=3.5) == 1
    assert auto.decide(1, 9, now=5.5) == 2


def test_no_change_within_the_cooldown_and_none_in_the_hysteresis_band() -> None:
    auto = scaler()
    assert auto.decide(1, 9, now=3.0) == 1  # overloaded since 3 s, but cooling down until 5 s
    assert auto.decide(1, 9, now=5.0) == 2
    # with 2 replicas of 4: above 8 grows, at most 2 (half of one fewer) shrinks, between holds
    for t in range(6, 60):
        assert auto.decide(2, 3, now=float(t)) == 2
    assert auto.decide(2, 2, now=60.0) == 2
    assert auto.decide(2, 2, now=69.0) == 2
    assert auto.decide(2, 2, now=70.0) == 1  # 10 s at or below the band


def test_bounds_hold_and_dead_replicas_are_replaced_at_once() -> None:
    auto = scaler(cooldown=0.0, upscale_delay=0.0)
    assert auto.decide(3, 100, now=1.0) == 3  # at --max
    assert auto.decide(0, 0, now=2.0) == 1  # every replica died: back to --min now
    assert auto.decide(1, 0, now=100.0) == 1  # never below --min


def test_explicit_target_overrides_the_batch_size() -> None:
    auto = Autoscaler(
        AutoscalePolicy(1, 4, target=1, upscale_delay=0, cooldown=0), capacity=8, now=0.0
    )
    assert auto.decide(1, 2, now=1.0) == 2


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [(0, 2, "--min must be at least 1"), (3, 2, "--max (2) is below --min (3)")],
)
def test_bad_bounds_are_one_clear_error(low: int, high: int, message: str) -> None:
    with pytest.raises(ClusterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AutoscalePolicy(low, high)

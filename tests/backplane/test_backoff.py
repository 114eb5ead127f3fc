"""Reconnect delays: doubling, capped, jittered, with a floor (socket-free)."""

from __future__ import annotations

import pytest

from wskit.backplane.backoff import Backoff

pytestmark = pytest.mark.timeout(10)


def test_delays_double_up_to_the_cap_each_drawn_in_its_upper_half() -> None:
    backoff = Backoff(0.05, 2.0)
    nominal = [min(0.05 * 2 ** i, 2.0) for i in range(10)]
    for d in nominal:
        assert d / 2 <= backoff.next() <= d


def test_instances_that_lost_redis_together_do_not_retry_together() -> None:
    firsts = {round(Backoff(0.05, 2.0).next(), 9) for _ in range(50)}
    assert len(firsts) > 40


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(0.05, 2.0)
    for _ in range(6):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.05


def test_a_base_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(1.0, 0.5)

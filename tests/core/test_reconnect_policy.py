"""The reconnect policy (wskit.core.reconnect), without sockets."""

from __future__ import annotations

import random

import pytest

from wskit.core.protocol import CloseCode
from wskit.core.reconnect import FINAL, RECONNECT, Backoff, should_reconnect


def test_full_jitter_stays_under_the_capped_exponential() -> None:
    backoff = Backoff(base=0.25, cap=4.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(12)]
    ceilings = [min(4.0, 0.25 * 2 ** k) for k in range(12)]
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len(set(waits)) == 12  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next() <= 0.25


def test_jitter_spreads_a_herd() -> None:
    """200 clients dropped at once: their first retries spread over the window."""
    firsts = [Backoff(base=1.0, cap=8.0, rng=random.Random(seed)).next() for seed in range(200)]
    buckets = [sum(1 for w in firsts if k / 10 <= w < (k + 1) / 10) for k in range(10)]
    assert max(buckets) < 40  # uniform would be 20 a bucket; no spike


@pytest.mark.parametrize("code", sorted(c for c in RECONNECT if c is not None))
def test_reconnect_after_transient_closes(code: int) -> None:
    assert should_reconnect(code, fresh_token=False)


@pytest.mark.parametrize("code", sorted(FINAL))
def test_no_reconnect_after_final_closes(code: int) -> None:
    assert not should_reconnect(code, fresh_token=False)


def test_4001_only_with_a_fresh_token() -> None:
    assert not should_reconnect(CloseCode.UNAUTHORIZED, fresh_token=False)
    assert should_reconnect(CloseCode.UNAUTHORIZED, fresh_token=True)
    assert should_reconnect(None, fresh_token=False)  # the TCP connection dropped
    assert not RECONNECT & FINAL


def test_backoff_validates() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)


def test_the_named_transient_codes_are_reconnected_after() -> None:
    """1006 (reported, never sent) and 1013 (IANA's "try again later") have names now."""
    assert CloseCode.ABNORMAL_CLOSURE == 1006 and CloseCode.TRY_AGAIN_LATER == 1013
    for code in (CloseCode.ABNORMAL_CLOSURE, CloseCode.TRY_AGAIN_LATER):
        assert should_reconnect(code, fresh_token=False)
